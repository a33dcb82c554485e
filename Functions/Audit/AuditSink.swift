import CoreMetrics
import FunctionRuntime
import Logging

/// One audit event as the module records it (docs/audit.md fields); the audit log adds the chain,
/// `seq`, id, time and hashes when it appends.
struct AuditRecord: Sendable, Equatable {
    enum Severity: String, Sendable { case info, warning, high, critical }

    var tenantID: TenantID?
    var actorSub: UserID?
    var actorEmail: String?
    var eventType: String
    var severity: Severity
    var details: [String: JSONValue]
}

/// Where events that accompany no data change go (logins, RBAC fetches, denials, purges).
/// Business changes do not use this: their event is written by the store in the change's own
/// transaction (`LeadStore`).
protocol AuditSink: Sendable {
    /// Best effort: a failure is logged and counted (`fnhost_audit_write_failures_total`).
    func record(_ event: AuditRecord) async
    /// Must be written: the caller fails when it cannot be (e.g. a staging override grant).
    func require(_ event: AuditRecord) async throws(StoreUnavailable)
}

/// The hash-chained log in the database.
struct AuditLog: AuditSink {
    let store: any AuditStore
    let logger: Logger
    let failures: CoreMetrics.Counter

    init(store: any AuditStore, logger: Logger, metrics: any MetricsFactory) {
        self.store = store
        self.logger = logger
        self.failures = CoreMetrics.Counter(label: "fnhost_audit_write_failures_total", factory: metrics)
    }

    func record(_ event: AuditRecord) async {
        do {
            try await require(event)
        } catch {
            // Logged without details: they may name people; the event type says what was lost.
            logger.error(
                "audit event not written",
                metadata: ["audit_event": .string(event.eventType), "reason": .string(error.description)])
        }
    }

    func require(_ event: AuditRecord) async throws(StoreUnavailable) {
        do {
            _ = try await store.append(event)
        } catch {
            failures.increment()
            throw error
        }
    }
}

import FunctionRuntime
import Logging

/// One audit event as the module records it (SPEC §8 fields; the hash chain is the audit log's job).
struct AuditRecord: Sendable, Equatable {
    enum Severity: String, Sendable { case info, warning, high, critical }

    var tenantID: String?
    var actorSub: String?
    var actorEmail: String?
    var eventType: String
    var severity: Severity
    var details: [String: JSONValue]
}

/// Where audit events go. Until the hash-chained log exists, `LogAuditSink` writes them as
/// structured log lines (`high`/`critical` at error level so they page).
protocol AuditSink: Sendable {
    func record(_ event: AuditRecord) async
}

struct LogAuditSink: AuditSink {
    let logger: Logger

    func record(_ event: AuditRecord) async {
        var metadata: Logger.Metadata = [
            "audit_event": .string(event.eventType), "severity": .string(event.severity.rawValue),
        ]
        if let tenant = event.tenantID { metadata["tenant_id"] = .string(tenant) }
        if let sub = event.actorSub { metadata["actor_sub"] = .string(sub) }
        if let email = event.actorEmail { metadata["actor_email"] = .string(email) }
        var details = JSONWriter()
        JSONValue.object(event.details).write(to: &details)
        metadata["details"] = .string(String(decoding: details.bytes, as: UTF8.self))
        switch event.severity {
        case .high, .critical: logger.error("audit", metadata: metadata)
        case .warning: logger.warning("audit", metadata: metadata)
        case .info: logger.info("audit", metadata: metadata)
        }
    }
}

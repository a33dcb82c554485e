import FunctionRuntime
import NIOPosix
import Synchronization

/// Why the store could not answer; the one place a database failure becomes a 503.
struct StoreUnavailable: Error, Sendable, CustomStringConvertible {
    let description: String

    var functionError: FunctionError { .serviceUnavailable("the database is unavailable; try again shortly") }
}

/// Tenant data for leads. Every method takes the tenant from the caller's token and filters on it;
/// another tenant's id is simply not found.
/// The module's database: leads and the audit log, on one connection pool.
typealias ModuleStore = LeadStore & AuditStore & OutboxStore

/// One lead of a listing as ready-made JSON (the API shape), with its position for the next cursor.
struct LeadJSON: Sendable {
    var json: String
    var cursor: LeadCursor
}

protocol LeadStore: Sendable {
    func list(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [Lead]
    /// The same page as `list`, each lead already written as its API JSON (PostgreSQL builds it,
    /// so a listing decodes one column per row instead of ten).
    func listJSON(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [LeadJSON]
    func get(tenant: TenantID, id: String) async throws(StoreUnavailable) -> Lead?
    /// Writes the lead and its audit event in one transaction: both or neither.
    func create(tenant: TenantID, lead: Lead, audit: AuditRecord) async throws(StoreUnavailable)
    /// Applies the change and appends its audit event in one transaction; nil (and no event) when
    /// the tenant has no such lead.
    func update(
        tenant: TenantID, id: String, fields: LeadFields, updatedAt: String, audit: AuditRecord
    ) async throws(StoreUnavailable) -> Lead?
    /// Deletes and appends its audit event in one transaction; false (and no event) when the tenant has no such lead.
    func delete(tenant: TenantID, id: String, audit: AuditRecord) async throws(StoreUnavailable) -> Bool
    func ping() async -> Bool
    /// The `module_permissions` rows: (permission, read_only, step_up).
    func permissionRows() async throws(StoreUnavailable) -> [(String, Bool, Bool)]
}

extension LeadStore {
    func listJSON(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [LeadJSON] {
        try await list(tenant: tenant, limit: limit, after: cursor).map { lead in
            var writer = JSONWriter(capacity: 320)
            lead.write(to: &writer)
            return LeadJSON(json: String(decoding: writer.bytes, as: UTF8.self), cursor: LeadCursor(createdAt: lead.createdAt, id: lead.id))
        }
    }

    /// Every lead of the tenant, newest first, a page at a time, so an export never holds them all.
    func forEachPage(tenant: TenantID, pageSize: Int, _ body: ([Lead]) async throws -> Void) async throws {
        var cursor: LeadCursor?
        while true {
            let page = try await list(tenant: tenant, limit: pageSize, after: cursor)
            if !page.isEmpty { try await body(page) }
            guard page.count == pageSize, let last = page.last else { return }
            cursor = LeadCursor(createdAt: last.createdAt, id: last.id)
        }
    }
}

/// Runs a database call against a deadline, so no request waits on a dead pool: one timer on an
/// event loop cancels the call and answers `StoreUnavailable` (cheaper than a task group per call).
func withDeadline<T: Sendable>(
    _ deadline: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws(StoreUnavailable) -> T {
    let outcome = DeadlineOutcome<T>()
    let result: Result<T, StoreUnavailable> = await withCheckedContinuation { continuation in
        outcome.install(continuation)
        let work = Task {
            do {
                outcome.finish(.success(try await operation()))
            } catch {
                outcome.finish(.failure(StoreUnavailable(description: String(describing: type(of: error)))))
            }
        }
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(deadline.nanosecondsClamped)) {
            outcome.finish(.failure(StoreUnavailable(description: "timed out")))
            work.cancel()
        }
        outcome.onFinish { timer.cancel() }
    }
    return try result.get()
}

/// Resumes a continuation exactly once, whichever of the work and the timer finishes first.
private final class DeadlineOutcome<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Result<T, StoreUnavailable>, Never>?
        var pending: Result<T, StoreUnavailable>?
        var done = false
        var cleanup: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<Result<T, StoreUnavailable>, Never>) {
        state.withLock { $0.continuation = continuation }
    }

    func onFinish(_ cleanup: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.done { return true }
            state.cleanup = cleanup
            return false
        }
        if runNow { cleanup() }
    }

    func finish(_ result: Result<T, StoreUnavailable>) {
        let (continuation, cleanup) = state.withLock { state -> (CheckedContinuation<Result<T, StoreUnavailable>, Never>?, (@Sendable () -> Void)?) in
            guard !state.done else { return (nil, nil) }
            state.done = true
            let continuation = state.continuation
            state.continuation = nil
            return (continuation, state.cleanup)
        }
        cleanup?()
        continuation?.resume(returning: result)
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

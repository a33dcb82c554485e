import FunctionRuntime
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Why the store could not answer, read by kind from the driver's error (`StoreErrors.swift`);
/// `functionError` is the one place a store failure becomes an answer: a refused value is 400 naming
/// the field, a dependency or the deadline failing is 503, anything else 500 (docs/api.md).
struct StoreUnavailable: Error, Sendable, CustomStringConvertible {
    /// What failed, without values (an SQLSTATE, a driver's code): for logs.
    let description: String
    /// The connection failed during COMMIT: the change may or may not have been made.
    var outcomeUnknown = false
    var kind = StoreFailureKind.unavailable

    var functionError: FunctionError {
        if outcomeUnknown {
            return .serviceUnavailable("the database connection failed while committing; the outcome is unknown, check before retrying")
        }
        switch kind {
        case .refused(let field?): return .validationFailed("field '\(field)' holds a value the database refuses")
        case .refused(nil): return .validationFailed("the request holds a value the database refuses")
        case .failed: return .internalError
        case .unavailable, .retryable: return .serviceUnavailable("the database is unavailable; try again shortly")
        }
    }
}

/// Tenant data for leads. Every method takes the tenant from the caller's token and filters on it;
/// another tenant's id is simply not found.
/// The module's database: leads and the audit log, on one connection pool.
typealias ModuleStore = LeadStore & AuditStore & OutboxStore & TimerStore & RevocationTable

/// One page of a listing as the API returns it: the items as a ready-made JSON array (the API
/// shape, in order) and the cursor of the next page, if there is one.
struct LeadPage: Sendable {
    /// The JSON array, as the database returned it (PostgreSQL: the column's bytes, not copied).
    var items: ByteBuffer
    var next: LeadCursor?
}

protocol LeadStore: Sendable {
    func list(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [Lead]
    /// The page of at most `limit` leads after `cursor`, written as its API JSON, and whether more
    /// follow (PostgreSQL builds the whole page: one row, one column, instead of a row per lead).
    func listPage(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> LeadPage
    func get(tenant: TenantID, id: String) async throws(StoreUnavailable) -> Lead?
    /// Writes the lead and its audit event in one transaction: both or neither. With an idempotency
    /// key the key is recorded in the same transaction; a key seen before answers `.replayed` (same
    /// request) or `.conflict` (another request) and writes nothing.
    func create(tenant: TenantID, lead: Lead, audit: AuditRecord, idempotency: CreateIdempotency?) async throws(StoreUnavailable) -> CreateOutcome
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

/// `Idempotency-Key` of a create: the tenant-scoped key, the request's fingerprint, the answer to replay.
struct CreateIdempotency: Sendable, Equatable {
    var key: String
    var requestHash: String
    var response: String
}

enum CreateOutcome: Sendable, Equatable {
    case created
    /// The same key with the same request: the first answer, nothing written.
    case replayed(response: String)
    /// The same key with another request.
    case conflict
}

extension LeadStore {
    @discardableResult
    func create(tenant: TenantID, lead: Lead, audit: AuditRecord) async throws(StoreUnavailable) -> CreateOutcome {
        try await create(tenant: tenant, lead: lead, audit: audit, idempotency: nil)
    }

    /// The page from `list` (one lead more than asked, to know whether more follow).
    func listPage(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> LeadPage {
        let leads = try await list(tenant: tenant, limit: limit + 1, after: cursor)
        var writer = JSONWriter(capacity: 320 * min(leads.count, limit) + 2)
        writer.beginArray()
        for lead in leads.prefix(limit) {
            writer.comma()
            lead.write(to: &writer)
        }
        writer.endArray()
        let next = leads.count > limit ? leads.prefix(limit).last.map { LeadCursor(createdAt: $0.createdAt, id: $0.id) } : nil
        return LeadPage(items: ByteBuffer(bytes: writer.bytes), next: next)
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
/// A serialization failure or deadlock is tried again until the deadline.
func withDeadline<T: Sendable>(
    _ deadline: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws(StoreUnavailable) -> T {
    let outcome = DeadlineOutcome<T>()
    let result: Result<T, StoreUnavailable> = await withCheckedContinuation { continuation in
        outcome.install(continuation)
        let work = Task(executorPreference: EventLoopTaskExecutor.current) {
            while true {
                do {
                    outcome.finish(.success(try await operation()))
                } catch {
                    let failure = StoreUnavailable(classifying: error)
                    if failure.kind == .retryable, !outcome.isFinished, !Task.isCancelled {
                        await StoreRetry.pause()
                        continue
                    }
                    outcome.finish(.failure(failure))
                }
                return
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

/// The deadline of one write transaction (docs/api.md: a 503 means nothing was changed).
///
/// The caller is answered 503 at the deadline only while the transaction has not begun to commit;
/// a transaction that reaches its end after the deadline rolls back instead of committing. The work
/// is never cancelled from outside (a cancelled task cannot run its `ROLLBACK` in sqlite-nio, which
/// left the write lock held): it ends by itself, bounded by the database's own limits
/// (`statement_timeout`/`lock_timeout` set to the remaining time on PostgreSQL, `busy_timeout` on
/// SQLite). When the connection fails during `COMMIT` the outcome is unknown, and the answer says so.
final class TransactionDeadline: Sendable {
    enum Phase: Sendable { case running, committing, expired }

    struct Expired: Error {}

    private let phase = Mutex(Phase.running)
    let end: ContinuousClock.Instant

    init(_ deadline: Duration) { end = .now + deadline }

    /// Whole milliseconds left, at least 1 (for `SET LOCAL statement_timeout`).
    var remainingMilliseconds: Int64 {
        let left = end - .now
        return max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
    }

    /// The body is done: commit if the caller is still waiting, else roll back (throws `Expired`).
    func beginCommit() throws {
        let ok = phase.withLock { phase -> Bool in
            guard phase == .running else { return false }
            phase = .committing
            return true
        }
        guard ok else { throw Expired() }
    }

    /// The transaction failed without committing (a serialization failure or deadlock, even at
    /// COMMIT) and may run again: back to running while time is left; false once the deadline passed
    /// (the timer, which fires after `end`, then has nothing left to answer: the caller answers).
    func retry() -> Bool {
        phase.withLock { phase in
            guard phase != .expired, ContinuousClock.now < end else { return false }
            phase = .running
            return true
        }
    }

    /// The timer: true when the caller may be told 503 now (the transaction will not commit).
    func expire() -> Bool {
        phase.withLock { phase in
            guard phase == .running else { return false }
            phase = .expired
            return true
        }
    }

    var current: Phase { phase.withLock { $0 } }
}

/// Runs a write transaction under a `TransactionDeadline`: 503 at the deadline unless it is already
/// committing; a failure once committing began is reported as an unknown outcome, unless the server
/// answered the COMMIT with an error (then nothing was committed). A serialization failure or
/// deadlock runs the transaction again while time is left.
func withTransactionDeadline<T: Sendable>(
    _ deadline: Duration, logger: Logger? = nil, _ operation: @escaping @Sendable (TransactionDeadline) async throws -> T
) async throws(StoreUnavailable) -> T {
    let gate = TransactionDeadline(deadline)
    let outcome = DeadlineOutcome<T>()
    let result: Result<T, StoreUnavailable> = await withCheckedContinuation { continuation in
        outcome.install(continuation)
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(deadline.nanosecondsClamped)) {
            if gate.expire() { outcome.finish(.failure(StoreUnavailable(description: "timed out"))) }
        }
        outcome.onFinish { timer.cancel() }
        Task(executorPreference: EventLoopTaskExecutor.current) {
            while true {
                do {
                    outcome.finish(.success(try await operation(gate)))
                } catch {
                    if gate.current == .committing, !StoreUnavailable.isRefusedCommit(error) {
                        logger?.error("database COMMIT failed: the outcome of the change is unknown", metadata: ["error": .string(String(describing: type(of: error)))])
                        outcome.finish(.failure(StoreUnavailable(description: "commit outcome unknown", outcomeUnknown: true)))
                        return
                    }
                    let failure = StoreUnavailable(classifying: error)
                    if failure.kind == .retryable {
                        if gate.retry() {
                            await StoreRetry.pause()
                            continue
                        }
                        outcome.finish(.failure(StoreUnavailable(description: "timed out")))
                        return
                    }
                    outcome.finish(.failure(failure))
                }
                return
            }
        }
    }
    return try result.get()
}

/// The pause before trying a transaction again after a serialization failure or deadlock: 1–5 ms,
/// spread so two transactions that conflicted do not meet again in step.
enum StoreRetry {
    static func pause() async {
        try? await Task.sleep(for: .microseconds(Int.random(in: 1_000...5_000)))
    }
}

/// Resumes a continuation exactly once, whichever of the work and the timer finishes first.
final class DeadlineOutcome<T: Sendable>: Sendable {
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

    /// Answered already (the result, or the deadline).
    var isFinished: Bool { state.withLock { $0.done } }

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

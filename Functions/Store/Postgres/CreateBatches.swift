import FunctionRuntime
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// Creates without an idempotency key, committed in batches (group commit), one batcher per event
/// loop (`PostgresPool`).
///
/// A create asked for while the loop's previous batch is in flight waits, and the next batch takes
/// every create waiting by then (at most `maxBatch`) to PostgreSQL in one statement of
/// `fnhost_create_leads_each` (migration 14), hence one transaction: each lead and its audit event
/// commit together with the batch's others, and each request is answered when its batch commits. Alone
/// (at low load) a create is one statement of `fnhost_create_lead`, as before batching.
///
/// One create's bad value never fails, retries or delays the others: the request parser checks every
/// limit first (`LeadLimits`), and inside the statement each create runs in a savepoint of its own,
/// so a value the database refuses rolls back that create only and comes back as its row's SQLSTATE
/// (400 for its request), while the others commit.
///
/// Chains never fork: each event is appended under its chain head's lock, and the function takes the
/// heads in one order (chain id bytes, then position), so two batches never deadlock.
///
/// Deadlines: a create answers 503 at its deadline while it waits for a batch or a connection. Once its
/// batch is sent the database decides: the statement bounds its lock waits by the batch's most urgent
/// deadline and fails itself past it, so a 503 still means nothing committed; only a lost connection
/// leaves the outcome unknown. A batch PostgreSQL fails as a whole (the deadline, a deadlock; nothing
/// committed) is written again one create at a time, each with the time it has left.
final class CreateBatches: Sendable {
    /// One create: the lead and its audit event, sealed as a draft (the head's values come from
    /// PostgreSQL, and are checked against the draft's sealing).
    struct Item: Sendable {
        let tenant: TenantID
        let lead: Lead
        let draft: AuditEvent
        let details: String
        let parts: (before: [UInt8], after: [UInt8])

        init(tenant: TenantID, lead: Lead, draft: AuditEvent) {
            self.tenant = tenant
            self.lead = lead
            self.draft = draft
            details = draft.details.canonicalText
            parts = draft.canonicalParts
        }
    }

    private final class Waiter: Sendable {
        let item: Item
        let gate: TransactionDeadline
        let outcome: DeadlineOutcome<CreateOutcome>

        init(item: Item, gate: TransactionDeadline, outcome: DeadlineOutcome<CreateOutcome>) {
            self.item = item
            self.gate = gate
            self.outcome = outcome
        }
    }

    private struct State {
        var waiting: [Waiter] = []
        var running = false
    }

    /// The most creates in one statement: the function's limit, as many savepoints as a PostgreSQL
    /// backend tracks without overflowing its subtransaction cache (64, `PGPROC_MAX_CACHED_SUBXIDS`).
    static let maxBatch = 64

    private let client: PostgresClient
    private let loop: (any EventLoop)?
    private let statements: StatementMode
    private let logger: Logger
    private let state = Mutex(State())
    private let largest = Atomic<Int>(0)
    private let rewritten = Atomic<Int>(0)

    /// The most creates one batch has written so far (tests, and docs/benchmarks.md's measurements).
    var largestBatch: Int { largest.load(ordering: .relaxed) }
    /// How many batches failed as a whole and were written again one create at a time (tests).
    var batchesRewritten: Int { rewritten.load(ordering: .relaxed) }

    /// `loop`: the event loop whose requests this batcher serves (its batches run there); nil for a
    /// client the caller runs itself (tests, command-line runs).
    init(client: PostgresClient, loop: (any EventLoop)?, statements: StatementMode = .prepared, logger: Logger) {
        self.client = client
        self.loop = loop
        self.statements = statements
        self.logger = logger
    }

    /// `.created` once the create's batch committed; `StoreUnavailable` (refused: 400) when the database
    /// refuses one of its values, nothing of it committed; 503 when `deadline` passes before it is
    /// written (nothing committed) or when the connection is lost (`outcomeUnknown`).
    func create(_ item: Item, deadline: Duration) async throws(StoreUnavailable) -> CreateOutcome {
        let gate = TransactionDeadline(deadline)
        let outcome = DeadlineOutcome<CreateOutcome>()
        let result: Result<CreateOutcome, StoreUnavailable> = await withCheckedContinuation { continuation in
            outcome.install(continuation)
            let timerLoop = loop ?? MultiThreadedEventLoopGroup.singleton.any()
            let timer = timerLoop.scheduleTask(in: .nanoseconds(deadline.nanosecondsClamped)) {
                if gate.expire() { outcome.finish(.failure(StoreUnavailable(description: "timed out"))) }
            }
            outcome.onFinish { timer.cancel() }
            let start = state.withLock { state -> Bool in
                state.waiting.append(Waiter(item: item, gate: gate, outcome: outcome))
                guard !state.running else { return false }
                state.running = true
                return true
            }
            if start {
                let executor = loop.map { EventLoopTaskExecutor.of($0) } ?? EventLoopTaskExecutor.current
                Task(executorPreference: executor) { await self.run() }
            }
        }
        return try result.get()
    }

    /// Writes batches until nothing waits.
    private func run() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                state.waiting.removeAll { $0.outcome.isFinished }
                guard !state.waiting.isEmpty else {
                    state.running = false
                    return []
                }
                let count = min(state.waiting.count, Self.maxBatch)
                let batch = Array(state.waiting.prefix(count))
                state.waiting.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            await write(batch)
        }
    }

    private func write(_ batch: [Waiter]) async {
        do {
            try await client.withConnection { connection in
                // Claimed only once a connection is leased: a create still waiting for one answers 503
                // at its deadline; one whose deadline passed already is left out (it was answered).
                let claimed = batch.filter { (try? $0.gate.beginCommit()) != nil }
                guard !claimed.isEmpty else { return }
                self.largest.max(claimed.count, ordering: .relaxed)
                if claimed.count == 1 {
                    await self.writeOne(claimed[0], on: connection)
                } else {
                    await self.writeMany(claimed, on: connection)
                }
            }
        } catch {
            // No connection: nothing was sent (a claimed create is always finished inside).
            let failure = StoreUnavailable(classifying: error)
            for waiter in batch { waiter.outcome.finish(.failure(failure)) }
        }
    }

    /// One create in one statement (`fnhost_create_lead`); a serialization failure or deadlock is
    /// written again while the create has time left.
    private func writeOne(_ waiter: Waiter, on connection: PostgresConnection) async {
        let item = waiter.item
        while true {
            let statement = PostgresDatabase.CreateLeadStatement(
                tenant: item.tenant.text, limit: Int32(clamping: waiter.gate.remainingMilliseconds), lead: item.lead, event: item.draft,
                details: item.details, parts: item.parts)
            do {
                let sealed = try await connection.rows(statement, statements, logger: logger)
                check(item.draft, sealedBy: sealed.first)
                waiter.outcome.finish(.success(.created))
            } catch let error as PSQLError where error.serverInfo != nil {
                // Answered by the server: the statement (its own transaction) committed nothing.
                let failure = StoreUnavailable(classifying: error)
                if failure.kind == .retryable, ContinuousClock.now < waiter.gate.end {
                    await StoreRetry.pause()
                    continue
                }
                refused(waiter, failure)
            } catch {
                waiter.outcome.finish(.failure(lost(error)))
            }
            return
        }
    }

    /// A create the database refused (nothing of it committed): its request's answer, and a log line
    /// with the SQLSTATE only (the message may quote the value).
    private func refused(_ waiter: Waiter, _ failure: StoreUnavailable) {
        logger.warning("a create failed in the database; nothing of it committed", metadata: ["error": .string(failure.description)])
        waiter.outcome.finish(.failure(failure.kind == .retryable ? StoreUnavailable(description: "timed out") : failure))
    }

    /// Several creates in one statement (`fnhost_create_leads_each`), so one transaction, each create
    /// in a savepoint of its own.
    private func writeMany(_ batch: [Waiter], on connection: PostgresConnection) async {
        let limit = batch.map(\.gate.remainingMilliseconds).min() ?? 1
        let statement = CreateLeadsStatement(limit: Int32(clamping: limit), items: batch.map(\.item))
        do {
            let rows = try await connection.rows(statement, statements, logger: logger)
            deliver(rows, to: batch)
        } catch let error as PSQLError where error.serverInfo != nil {
            // Failed as a whole (the deadline, a deadlock), nothing committed: each create alone, with
            // the time it has left.
            rewritten.add(1, ordering: .relaxed)
            logger.warning(
                "a batch of creates failed as a whole; writing them one at a time",
                metadata: ["sqlstate": .string(error.serverInfo?[.sqlState] ?? ""), "creates": .stringConvertible(batch.count)])
            for waiter in batch {
                if ContinuousClock.now < waiter.gate.end {
                    await writeOne(waiter, on: connection)
                } else {
                    waiter.outcome.finish(.failure(StoreUnavailable(description: "timed out")))
                }
            }
        } catch {
            let failure = lost(error)
            for waiter in batch { waiter.outcome.finish(.failure(failure)) }
        }
    }

    /// Each row to the create at its position: sealed (committed), or the SQLSTATE that refused it
    /// (rolled back to its savepoint). The statement committed, so a create without a row (never,
    /// unless the database misbehaves) is told its outcome is unknown.
    private func deliver(_ rows: [CreateLeadsStatement.Row], to batch: [Waiter]) {
        var delivered = [Bool](repeating: false, count: batch.count)
        for row in rows {
            let index = Int(row.index) - 1
            guard batch.indices.contains(index), !delivered[index] else { continue }
            delivered[index] = true
            switch row.outcome {
            case .sealed(let seal):
                check(batch[index].item.draft, sealedBy: seal)
                batch[index].outcome.finish(.success(.created))
            case .refused(let failure):
                refused(batch[index], failure)
            }
        }
        for index in batch.indices where !delivered[index] {
            logger.error("a create had no row in its batch's answer: its outcome is unknown")
            batch[index].outcome.finish(.failure(StoreUnavailable(description: "no row in the batch's answer", outcomeUnknown: true)))
        }
    }

    /// Committed already: a seal other than the draft's is for the verifier to report; say so loudly now.
    private func check(_ draft: AuditEvent, sealedBy seal: PostgresAudit.Seal?) {
        if draft.sealedBy(seal) == nil {
            logger.critical("an audit event was sealed differently by PostgreSQL", metadata: ["chain_id": .string(draft.chainID)])
        }
    }

    /// The connection failed after the statement was sent: it may or may not have committed.
    private func lost(_ error: any Error) -> StoreUnavailable {
        logger.error("database COMMIT failed: the outcome of the change is unknown", metadata: ["error": .string(String(describing: type(of: error)))])
        return StoreUnavailable(description: "commit outcome unknown", outcomeUnknown: true)
    }

    /// `fnhost_create_leads_each(limit_ms, chains, items)`: the chains apart from the items, so the
    /// function orders the creates by chain without reading an item (an item it cannot read fails
    /// alone, inside its savepoint).
    struct CreateLeadsStatement: PostgresPreparedStatement {
        static let name = "fnhost.CreateLeadsEachStatement"
        static let sql = """
            SELECT o_index, o_seq, o_occurred_at, o_prev_hash, o_hash, o_error, o_field
            FROM fnhost_create_leads_each($1, $2, $3)
            """
        typealias Row = (index: Int32, outcome: Outcome)

        enum Outcome: Sendable {
            case sealed(PostgresAudit.Seal)
            case refused(StoreUnavailable)
        }

        let limit: Int32
        let chains: [String]
        let items: [String]

        init(limit: Int32, items: [Item]) {
            self.limit = limit
            chains = items.map(\.draft.chainID)
            self.items = items.map(Self.json)
        }

        /// Raw strings, as `fnhost_create_leads_each` would take them from any caller (tests).
        init(limit: Int32, chains: [String], items: [String]) {
            self.limit = limit
            self.chains = chains
            self.items = items
        }

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 3)
            bindings.append(limit)
            bindings.append(chains)
            bindings.append(items)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            let (index, seq, occurredAt, prevHash, hash, error, field) = try row.decode(
                (Int32, Int64?, String?, String?, String?, String?, String?).self)
            if let seq, let occurredAt, let prevHash, let hash, error == nil {
                return (index, .sealed((seq, occurredAt, prevHash, hash)))
            }
            var kind = StoreUnavailable.kind(sqlState: error ?? "")
            if case .refused = kind {
                // `o_field`: the column PostgreSQL named, else the constraint (`leads_name_check`).
                kind = .refused(field: field.flatMap { LeadColumns.field(table: "leads", column: $0, constraint: $0) })
            }
            return (index, .refused(StoreUnavailable(description: "postgres SQLSTATE \(error ?? "?") in a batch", kind: kind)))
        }

        /// One create as `fnhost_create_leads_each` reads it: every text field as a JSON string (absent
        /// values as null), the details as their canonical JSON, the canonical form's parts in hex. The
        /// chain travels beside it (`chains`).
        static func json(_ item: Item) -> String {
            let lead = item.lead
            let event = item.draft
            var writer = JSONWriter(capacity: 1024)
            writer.beginObject()
            writer.field("tenant", item.tenant.text)
            writer.field("id", lead.id)
            writer.field("name", lead.name)
            writer.field("email", lead.email)
            writer.field("phone", lead.phone)
            writer.field("company", lead.company)
            writer.field("status", lead.status)
            writer.field("notes", lead.notes)
            writer.field("created_by", lead.createdBy)
            writer.field("created_at", lead.createdAt)
            writer.field("updated_at", lead.updatedAt)
            writer.field("event_id", event.eventID)
            writer.field("event_tenant", event.tenantID)
            writer.field("now", event.occurredAt)
            writer.field("actor_sub", event.actorSub)
            writer.field("actor_email", event.actorEmail)
            writer.field("event_type", event.eventType)
            writer.field("severity", event.severity)
            writer.key("details")
            writer.raw(item.details)
            writer.field("before", Hex.encode(item.parts.before))
            writer.field("after", Hex.encode(item.parts.after))
            writer.endObject()
            return String(decoding: writer.bytes, as: UTF8.self)
        }
    }
}

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
/// `fnhost_create_leads` (migration 13), hence one transaction: each lead and its audit event commit
/// together with the batch's others, and each request is answered when its batch commits. Alone (at
/// low load) a create is one statement of `fnhost_create_lead`, as before batching.
///
/// Chains never fork: each event is appended under its chain head's lock, and the function takes the
/// heads in one order (chain id bytes, then position), so two batches never deadlock.
///
/// Deadlines: a create answers 503 at its deadline while it waits for a batch or a connection. Once its
/// batch is sent the database decides: the statement bounds its lock waits by the batch's most urgent
/// deadline and fails itself past it, so a 503 still means nothing committed; only a lost connection
/// leaves the outcome unknown. A batch PostgreSQL refuses as a whole (nothing committed) is written
/// again one create at a time, each with the time it has left, so one create can never fail its
/// neighbours.
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

    /// The most creates in one statement (the function accepts 256).
    static let maxBatch = 64

    private let client: PostgresClient
    private let loop: (any EventLoop)?
    private let logger: Logger
    private let state = Mutex(State())
    private let largest = Atomic<Int>(0)

    /// The most creates one batch has written so far (tests, and docs/benchmarks.md's measurements).
    var largestBatch: Int { largest.load(ordering: .relaxed) }

    /// `loop`: the event loop whose requests this batcher serves (its batches run there); nil for a
    /// client the caller runs itself (tests, command-line runs).
    init(client: PostgresClient, loop: (any EventLoop)?, logger: Logger) {
        self.client = client
        self.loop = loop
        self.logger = logger
    }

    /// `.created` once the create's batch committed; 503 (`StoreUnavailable`) when `deadline` passes
    /// before its batch is sent, when the database refuses it (nothing committed), or when the
    /// connection is lost (`outcomeUnknown`).
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
            let failure = StoreUnavailable(description: String(describing: type(of: error)))
            for waiter in batch { waiter.outcome.finish(.failure(failure)) }
        }
    }

    /// One create in one statement (`fnhost_create_lead`).
    private func writeOne(_ waiter: Waiter, on connection: PostgresConnection) async {
        let item = waiter.item
        let statement = PostgresDatabase.CreateLeadStatement(
            tenant: item.tenant.text, limit: Int32(clamping: waiter.gate.remainingMilliseconds), lead: item.lead, event: item.draft,
            details: item.details, parts: item.parts)
        do {
            let sealed = try await connection.rows(statement, logger: logger)
            check(item.draft, sealedBy: sealed.first)
            waiter.outcome.finish(.success(.created))
        } catch let error as PSQLError where error.serverInfo != nil {
            logger.warning(
                "create refused by the database; nothing committed",
                metadata: ["sqlstate": .string(error.serverInfo?[.sqlState] ?? ""), "detail": .string(error.serverInfo?[.message] ?? "")])
            waiter.outcome.finish(.failure(StoreUnavailable(description: "refused by the database")))
        } catch {
            waiter.outcome.finish(.failure(lost(error)))
        }
    }

    /// Several creates in one statement (`fnhost_create_leads`), so one transaction.
    private func writeMany(_ batch: [Waiter], on connection: PostgresConnection) async {
        let limit = batch.map(\.gate.remainingMilliseconds).min() ?? 1
        let statement = CreateLeadsStatement(limit: Int32(clamping: limit), items: CreateLeadsStatement.json(batch.map(\.item)))
        do {
            let rows = try await connection.rows(statement, logger: logger)
            deliver(rows, to: batch)
        } catch let error as PSQLError where error.serverInfo != nil {
            // Refused as a whole, nothing committed: each create alone, with the time it has left.
            logger.warning(
                "a batch of creates was refused; writing them one at a time",
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

    /// Each row to the create at its position. The statement committed, so a create without a row
    /// (never, unless the database misbehaves) is told its outcome is unknown.
    private func deliver(_ rows: [CreateLeadsStatement.Row], to batch: [Waiter]) {
        var delivered = [Bool](repeating: false, count: batch.count)
        for row in rows {
            let index = Int(row.0) - 1
            guard batch.indices.contains(index), !delivered[index] else { continue }
            delivered[index] = true
            check(batch[index].item.draft, sealedBy: (row.1, row.2, row.3, row.4))
            batch[index].outcome.finish(.success(.created))
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

    struct CreateLeadsStatement: PostgresPreparedStatement {
        static let name = "fnhost.CreateLeadsStatement"
        static let sql = "SELECT o_index, o_seq, o_occurred_at, o_prev_hash, o_hash FROM fnhost_create_leads($1, $2::jsonb)"
        typealias Row = (Int32, Int64, String, String, String)
        let limit: Int32
        let items: String

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 2)
            bindings.append(limit)
            bindings.append(items)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }

        /// The batch as `fnhost_create_leads` reads it: one object per create, every text field as a
        /// JSON string (absent values as null), the details as their canonical JSON, the canonical
        /// form's parts in hex.
        static func json(_ items: [Item]) -> String {
            var writer = JSONWriter(capacity: 1024 * items.count)
            writer.beginArray()
            for item in items {
                let lead = item.lead
                let event = item.draft
                writer.comma()
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
                writer.field("chain", event.chainID)
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
            }
            writer.endArray()
            return String(decoding: writer.bytes, as: UTF8.self)
        }
    }
}

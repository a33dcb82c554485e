import FunctionRuntime
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// Listing pages read in batches, one batcher per event loop (`PostgresPool`).
///
/// A page asked for while the loop's previous batch is in flight waits, and the next batch takes
/// every page waiting by then (at most `maxBatch`) to PostgreSQL in one call of
/// `fnhost_leads_json_pages` (migration 12): one round trip, one row per page, matched back to its
/// request by position (`o_index`), never by order or content. Under load the per-call costs —
/// PostgreSQL's wake-up, protocol and transaction, fnhost's write and read of the connection — are
/// paid once per batch instead of once per request; at low load a batch is a single page and costs
/// what one call did.
///
/// Each request keeps its own deadline (a timer on its loop answers 503 when it passes, whether the
/// page is still waiting or already in a batch; a finished request is left out of the next batch).
/// A batch PostgreSQL refuses as a whole is retried one page at a time, so one page can never fail its
/// neighbours; a lost connection fails the batch's pages (503).
///
/// Isolation: the function sets the row-level-security tenant before each page's query and filters on
/// it too; `PageBatchTests` reads many tenants' pages concurrently and checks every item's owner.
final class PageBatches: Sendable {
    struct Request: Sendable {
        let tenant: TenantID
        let limit: Int
        let cursor: LeadCursor?
    }

    private final class Waiter: Sendable {
        let request: Request
        let outcome: DeadlineOutcome<LeadPage>

        init(request: Request, outcome: DeadlineOutcome<LeadPage>) {
            self.request = request
            self.outcome = outcome
        }
    }

    private struct State {
        var waiting: [Waiter] = []
        var running = 0
    }

    /// The most pages in one call (the function accepts 256).
    static let maxBatch = 64
    /// One batch in flight per loop: two (each on its own connection) measured no faster under `make bench`'s
    /// load and doubled the listing's p99 (docs/benchmarks.md, session 8).
    static let defaultInFlight = 1

    private let client: PostgresClient
    private let loop: (any EventLoop)?
    /// Batches in flight at once (each on its own connection); more pages wait for the next batch.
    private let inFlight: Int
    private let statements: StatementMode
    private let logger: Logger
    private let state = Mutex(State())
    private let largest = Atomic<Int>(0)

    /// The most pages one batch has read so far (tests, and docs/benchmarks.md's measurements).
    var largestBatch: Int { largest.load(ordering: .relaxed) }

    /// `loop`: the event loop whose requests this batcher serves (its batches run there); nil for a
    /// client the caller runs itself (tests, command-line runs).
    init(
        client: PostgresClient, loop: (any EventLoop)?, inFlight: Int = PageBatches.defaultInFlight, statements: StatementMode = .prepared,
        logger: Logger
    ) {
        self.client = client
        self.loop = loop
        self.statements = statements
        self.inFlight = max(1, inFlight)
        self.logger = logger
    }

    /// The page, or 503 (`StoreUnavailable`) when `deadline` passes first or the database fails.
    func page(_ request: Request, deadline: Duration) async throws(StoreUnavailable) -> LeadPage {
        let outcome = DeadlineOutcome<LeadPage>()
        let result: Result<LeadPage, StoreUnavailable> = await withCheckedContinuation { continuation in
            outcome.install(continuation)
            let timerLoop = loop ?? MultiThreadedEventLoopGroup.singleton.any()
            let timer = timerLoop.scheduleTask(in: .nanoseconds(deadline.nanosecondsClamped)) {
                outcome.finish(.failure(StoreUnavailable(description: "timed out")))
            }
            outcome.onFinish { timer.cancel() }
            let start = state.withLock { state -> Bool in
                state.waiting.append(Waiter(request: request, outcome: outcome))
                guard state.running < inFlight else { return false }
                state.running += 1
                return true
            }
            if start {
                let executor = loop.map { EventLoopTaskExecutor.of($0) } ?? EventLoopTaskExecutor.current
                Task(executorPreference: executor) { await self.run() }
            }
        }
        return try result.get()
    }

    /// Runs batches until nothing waits.
    private func run() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                state.waiting.removeAll { $0.outcome.isFinished }
                guard !state.waiting.isEmpty else {
                    state.running -= 1
                    return []
                }
                let count = min(state.waiting.count, Self.maxBatch)
                let batch = Array(state.waiting.prefix(count))
                state.waiting.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            largest.max(batch.count, ordering: .relaxed)
            await read(batch)
        }
    }

    private func read(_ batch: [Waiter]) async {
        do {
            let rows = try await client.rows(PagesStatement(requests: batch.map(\.request)), statements, logger: logger)
            deliver(rows, to: batch)
        } catch let error as PSQLError where error.serverInfo != nil && batch.count > 1 {
            // Refused as a whole: each page alone, so a page PostgreSQL refuses fails only itself.
            logger.warning(
                "a batch of listing pages was refused; reading them one at a time",
                metadata: ["sqlstate": .string(error.serverInfo?[.sqlState] ?? ""), "pages": .stringConvertible(batch.count)])
            for waiter in batch where !waiter.outcome.isFinished { await read([waiter]) }
        } catch {
            let failure = StoreUnavailable(classifying: error)
            for waiter in batch { waiter.outcome.finish(.failure(failure)) }
        }
    }

    /// Each row to the request at its position; a request without a row (never, unless the database
    /// misbehaves) fails rather than waiting for its deadline.
    private func deliver(_ rows: [PagesStatement.Row], to batch: [Waiter]) {
        var delivered = [Bool](repeating: false, count: batch.count)
        for row in rows {
            let index = Int(row.0) - 1
            guard batch.indices.contains(index), !delivered[index] else { continue }
            delivered[index] = true
            let next = row.2 ? row.3.flatMap { created in row.4.map { LeadCursor(createdAt: created, id: $0) } } : nil
            batch[index].outcome.finish(.success(LeadPage(items: row.1, next: next)))
        }
        for index in batch.indices where !delivered[index] {
            batch[index].outcome.finish(.failure(StoreUnavailable(description: "no page in the batch's answer")))
        }
    }

    struct PagesStatement: PostgresPreparedStatement {
        static let name = "fnhost.PagesStatement"
        static let sql = "SELECT o_index, o_items, o_more, o_last_created, o_last_id FROM fnhost_leads_json_pages($1, $2, $3, $4)"
        typealias Row = (Int32, ByteBuffer, Bool, String?, String?)

        let requests: [Request]

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 4)
            bindings.append(requests.map(\.tenant.text))
            bindings.append(requests.map { Int64($0.limit) })
            bindings.append(requests.map { $0.cursor?.createdAt ?? "" })
            bindings.append(requests.map { $0.cursor?.id ?? "" })
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }
}

import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The module's PostgreSQL connections: one `PostgresClient` per event loop, each opening its
/// connections on that loop, and every call served by the client of the loop it runs on.
///
/// Why not one pool for the process: a request runs on its HTTP connection's event loop, and a
/// connection on another loop makes every query two cross-thread hops (the query written on the
/// connection's loop, the task resumed there, the response written back on the first), each a
/// wake-up of a parked thread. With a client per loop the request, its query and its rows stay on
/// one thread. `keepOpen` connections (`DATABASE_POOL_KEEP_OPEN`, spread the same way) stay open
/// though idle: releasing one of those schedules no idle-timeout timer (postgres-nio runs each timer
/// as a task group of its own; under a steady load, ~9 % of the listing's throughput). The rest open
/// on demand and close after 60 s idle, so an idle instance holds only what it keeps open.
///
/// Trap: PostgreSQL's `max_connections` (100 by default) is shared by every instance; kept-open
/// connections count against it all the time (the test suite's hosts exhausted it when each kept 20).
final class PostgresPool: Service, Sendable {
    private let loops: [any EventLoop]
    let clients: [PostgresClient]
    /// The listing's page batcher of each client, in the same order (`PageBatches`).
    let pageBatches: [PageBatches]
    /// The group-committed creates of each client, in the same order (`CreateBatches`).
    let createBatches: [CreateBatches]
    /// Prepared or unnamed statements (`DATABASE_POOLER`).
    let statements: StatementMode
    private let next = Atomic<Int>(0)
    private let runsClients: Bool

    /// At most `size` connections in all — a true maximum, whatever the number of loops — and `keepOpen` of them
    /// open though idle, split as evenly as whole connections allow. With fewer connections than loops only that
    /// many loops get a client; a request on a loop without one uses the others' in turn.
    init(
        configuration: PostgresClient.Configuration, size: Int, keepOpen: Int = 0, statements: StatementMode = .prepared,
        group: MultiThreadedEventLoopGroup = .singleton, logger: Logger
    ) {
        let loops = Array(group.makeIterator())
        let size = max(1, size)
        let shares = Self.split(size, over: min(loops.count, size))
        let kept = Self.split(min(max(0, keepOpen), size), over: shares.count)
        var clients: [PostgresClient] = []
        for (index, share) in shares.enumerated() {
            var options = configuration
            options.options.maximumConnections = share
            options.options.minimumConnections = min(share, kept[index])
            clients.append(PostgresClient(configuration: options, eventLoopGroup: loops[index], backgroundLogger: logger))
        }
        self.loops = Array(loops.prefix(shares.count))
        self.clients = clients
        pageBatches = zip(clients, loops).map { PageBatches(client: $0, loop: $1, statements: statements, logger: logger) }
        createBatches = zip(clients, loops).map { CreateBatches(client: $0, loop: $1, statements: statements, logger: logger) }
        self.statements = statements
        runsClients = true
    }

    /// `total` in `parts` whole shares (at least one part) that differ by at most one and sum to `total`.
    static func split(_ total: Int, over parts: Int) -> [Int] {
        let parts = max(1, parts)
        return (0..<parts).map { total / parts + ($0 < total % parts ? 1 : 0) }
    }

    /// One client the caller runs itself (tests, command-line runs).
    init(client: PostgresClient, statements: StatementMode = .prepared, logger: Logger = Logger(label: "fnhost.postgres")) {
        loops = []
        clients = [client]
        pageBatches = [PageBatches(client: client, loop: nil, statements: statements, logger: logger)]
        createBatches = [CreateBatches(client: client, loop: nil, statements: statements, logger: logger)]
        self.statements = statements
        runsClients = false
    }

    /// The client of the event loop the caller runs on; off the loops, the next one in turn.
    var client: PostgresClient {
        if clients.count == 1 { return clients[0] }
        for index in loops.indices where loops[index].inEventLoop { return clients[index] }
        return clients[next.add(1, ordering: .relaxed).oldValue % clients.count]
    }

    /// The page batcher of the caller's event loop, chosen as `client` is.
    var pages: PageBatches {
        if pageBatches.count == 1 { return pageBatches[0] }
        for index in loops.indices where loops[index].inEventLoop { return pageBatches[index] }
        return pageBatches[next.add(1, ordering: .relaxed).oldValue % pageBatches.count]
    }

    /// The create batcher of the caller's event loop, chosen as `client` is.
    var creates: CreateBatches {
        if createBatches.count == 1 { return createBatches[0] }
        for index in loops.indices where loops[index].inEventLoop { return createBatches[index] }
        return createBatches[next.add(1, ordering: .relaxed).oldValue % createBatches.count]
    }

    /// Runs every client until cancelled or shut down (the pool is the module's `Service`).
    func run() async throws {
        guard runsClients else { return }
        await withDiscardingTaskGroup { group in
            for client in clients { group.addTask { await client.run() } }
        }
    }
}

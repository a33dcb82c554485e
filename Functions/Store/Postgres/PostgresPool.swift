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
/// one thread. Each client keeps its connections open (`minimumConnections` = its share of the
/// pool), so releasing a connection schedules no idle-timeout timer (postgres-nio runs each timer
/// as a task group of its own; per request that was a third of the listing's CPU).
final class PostgresPool: Service, Sendable {
    private let loops: [any EventLoop]
    let clients: [PostgresClient]
    private let next = Atomic<Int>(0)
    private let runsClients: Bool

    /// `size` connections in all, spread evenly over the loops of `group` (at least one per loop).
    init(configuration: PostgresClient.Configuration, size: Int, group: MultiThreadedEventLoopGroup = .singleton, logger: Logger) {
        let loops = Array(group.makeIterator())
        let share = max(1, (size + loops.count - 1) / loops.count)
        var configuration = configuration
        configuration.options.maximumConnections = share
        configuration.options.minimumConnections = share
        self.loops = loops
        clients = loops.map { loop in PostgresClient(configuration: configuration, eventLoopGroup: loop, backgroundLogger: logger) }
        runsClients = true
    }

    /// One client the caller runs itself (tests, command-line runs).
    init(client: PostgresClient) {
        loops = []
        clients = [client]
        runsClients = false
    }

    /// The client of the event loop the caller runs on; off the loops, the next one in turn.
    var client: PostgresClient {
        if clients.count == 1 { return clients[0] }
        for index in loops.indices where loops[index].inEventLoop { return clients[index] }
        return clients[next.add(1, ordering: .relaxed).oldValue % clients.count]
    }

    /// Runs every client until cancelled or shut down (the pool is the module's `Service`).
    func run() async throws {
        guard runsClients else { return }
        await withDiscardingTaskGroup { group in
            for client in clients { group.addTask { await client.run() } }
        }
    }
}

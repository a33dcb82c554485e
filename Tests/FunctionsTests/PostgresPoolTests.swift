import FunctionRuntime
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Testing

@testable import Functions

/// `PostgresPool` and `EventLoopTaskExecutor`: a request's work, its query and its rows stay on the
/// event loop of its HTTP connection.
@Suite struct PostgresPoolTests {
    static let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())

    @Test func eachLoopIsServedByItsOwnClient() async throws {
        let configuration = try PostgresURL.configuration("postgres://nobody@127.0.0.1:1/nothing?sslmode=disable")
        let pool = PostgresPool(configuration: configuration, size: 20, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        #expect(pool.clients.count == Self.loops.count)
        var chosen: [ObjectIdentifier] = []
        for loop in Self.loops {
            let id = try await loop.submit { ObjectIdentifier(pool.client) }.get()
            #expect(try await loop.submit { ObjectIdentifier(pool.client) }.get() == id, "the same client every time on one loop")
            chosen.append(id)
        }
        #expect(Set(chosen).count == Self.loops.count, "one client per loop")
        #expect(Set(chosen) == Set(pool.clients.map(ObjectIdentifier.init)))
        // Off the loops, the clients take turns.
        let offLoop = Set((0..<(2 * Self.loops.count)).map { _ in ObjectIdentifier(pool.client) })
        #expect(offLoop == Set(chosen))
        // One client of the caller's: always that one.
        let single = PostgresPool(client: pool.clients[0])
        #expect(try await Self.loops[Self.loops.count - 1].submit { single.client === pool.clients[0] }.get())
    }

    @Test func workPreferringALoopStaysOnThatLoop() async throws {
        for loop in Self.loops {
            let executor = EventLoopTaskExecutor.of(loop)
            #expect(EventLoopTaskExecutor.of(loop) === executor, "one executor per loop")
            let onLoop = await withTaskExecutorPreference(executor) { () async -> [Bool] in
                var seen = [loop.inEventLoop]
                for _ in 0..<10 {
                    await Task.yield()
                    seen.append(loop.inEventLoop)
                }
                // Resumed from another thread (a timer on another loop), it comes back to its loop.
                let elsewhere = Self.loops.first { $0 !== loop } ?? loop
                try? await elsewhere.scheduleTask(in: .milliseconds(1)) {}.futureResult.get()
                seen.append(loop.inEventLoop)
                let child = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { loop.inEventLoop }
                    return await group.next() ?? false
                }
                seen.append(child)
                return seen
            }
            #expect(onLoop == Array(repeating: true, count: onLoop.count), "\(onLoop)")
            #expect(try await loop.submit { EventLoopTaskExecutor.current === executor }.get())
        }
        #expect(EventLoopTaskExecutor.current == nil, "the test itself runs off the loops")
    }
}

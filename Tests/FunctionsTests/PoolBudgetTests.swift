import Foundation
import FunctionRuntime
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization
import TestSupport
import Testing

@testable import Functions

/// `DATABASE_POOL_SIZE` is the most connections an instance opens, whatever its number of event loops (issue 32:
/// a size of 1 on 4 loops opened 4, one per loop; 20 per instance × many instances overran a server's limit).
@Suite struct PoolBudgetTests {
    /// The most connections PostgreSQL showed at once, and whether the load is over.
    final class Watch: Sendable {
        let peak = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
    }

    @Test func theSizeIsSplitIntoWholeSharesThatSumToIt() {
        #expect(PostgresPool.split(1, over: 1) == [1])
        #expect(PostgresPool.split(5, over: 4) == [2, 1, 1, 1])
        #expect(PostgresPool.split(20, over: 2) == [10, 10])
        #expect(PostgresPool.split(0, over: 3) == [0, 0, 0])
        #expect(PostgresPool.split(3, over: 0) == [3])
        for total in 0...40 {
            for parts in 1...8 {
                let shares = PostgresPool.split(total, over: parts)
                #expect(shares.count == parts && shares.reduce(0, +) == total && (shares.max() ?? 0) - (shares.min() ?? 0) <= 1)
            }
        }
    }

    /// Four event loops, many concurrent queries through every loop's client: PostgreSQL counts at most `size`
    /// connections of the pool (its own `application_name`), and the pool does reach `size` (the limit is the
    /// setting, not something lower).
    @Test(arguments: [1, 3, 6]) func theSizeIsATrueMaximumOnFourLoops(size: Int) async throws {
        try await ScratchDatabase.with { database in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 4)
            let name = "fnhost-budget-" + UUID().uuidString.prefix(8).lowercased()
            var configuration = try PostgresURL.configuration(database.url)
            configuration.options.additionalStartupParameters = [("application_name", name)]
            let pool = PostgresPool(configuration: configuration, size: size, keepOpen: size, group: group, logger: ScratchDatabase.logger)
            #expect(pool.clients.count == min(size, 4))
            let running = Task { try await pool.run() }
            let watch = Watch()
            let admin = PostgresClient(configuration: try PostgresURL.configuration(database.adminURL), backgroundLogger: ScratchDatabase.logger)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await admin.run() }
                tasks.addTask {
                    while !watch.done.load(ordering: .relaxed) {
                        for try await count in try await admin.query(
                            "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = \(name)", logger: ScratchDatabase.logger
                        ).decode(Int.self) {
                            var current = watch.peak.load(ordering: .relaxed)
                            while count > current {
                                let (exchanged, original) = watch.peak.compareExchange(expected: current, desired: count, ordering: .relaxed)
                                if exchanged { break }
                                current = original
                            }
                        }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                }
                try await withThrowingTaskGroup(of: Void.self) { load in
                    for _ in 0..<48 {
                        let loop = group.any()
                        load.addTask(executorPreference: EventLoopTaskExecutor.of(loop)) {
                            _ = try await pool.client.query("SELECT pg_sleep(0.1)", logger: ScratchDatabase.logger).collect()
                        }
                    }
                    try await load.waitForAll()
                }
                watch.done.store(true, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(20))
                tasks.cancelAll()
            }
            running.cancel()
            _ = await running.result
            try await group.shutdownGracefully()
            #expect(watch.peak.load(ordering: .relaxed) <= size, "peak \(watch.peak.load(ordering: .relaxed)) connections, size \(size)")
            #expect(watch.peak.load(ordering: .relaxed) == size, "the pool opens up to its size under load")
        }
    }
}

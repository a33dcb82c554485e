import Foundation
import TestSupport
import FunctionRuntime
import HummingbirdTesting
import Logging
import PostgresNIO
import Synchronization
import Testing

@testable import Functions

/// Three instances on one database run each timer occurrence once (docs/runtime.md), as Azure's timer
/// trigger does across a scaled-out app.
@Suite struct TimerClaimTests {
    final class Runs: Sendable {
        let count = Mutex(0)
    }

    struct TickModule: FunctionModule {
        var settingDefaults: [String: String] { [:] }
        let runs: Runs

        func configure(_ context: inout ModuleContext) async throws {
            _ = try await ModuleSetup.make(&context, scriptRoot: context.scriptRoot)
            let runs = runs
            context.functions.register("Tick", timer: { _, _ in runs.count.withLock { $0 += 1 } })
        }
    }

    @Test(arguments: [Backend.postgres, Backend.sqlite])
    func threeInstancesRunEachOccurrenceOnce(backend: Backend) async throws {
        let run: @Sendable (String) async throws -> Void = { url in
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-tick-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try Data(
                #"{"functions":{"Tick":{"bindings":[{"type":"timerTrigger","direction":"in","name":"timer","schedule":"* * * * * *"}]}}}"#.utf8
            ).write(to: root.appendingPathComponent("function.json"))
            let runs = Runs()
            let settings = IdentityHarness.hostSettings(9, extra: ["DATABASE_URL": url])
            let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
            var hosts: [FunctionHost] = []
            for _ in 0..<3 {
                hosts.append(try await FunctionHost.build(
                    options: .init(scriptRoot: root.path, port: 0), module: TickModule(runs: runs), environment: settings, logger: logger))
            }
            let (first, second, third) = (hosts[0], hosts[1], hosts[2])
            try await first.application().test(.live) { _ in
                try await second.application().test(.live) { _ in
                    try await third.application().test(.live) { _ in
                        // Until a few occurrences ran (bounded), rather than a fixed time.
                        for _ in 0..<200 where runs.count.withLock({ $0 }) < 3 { try await Task.sleep(for: .milliseconds(50)) }
                        try await Task.sleep(for: .milliseconds(1100))  // and one more occurrence for the other instances to race on
                    }
                }
            }
            let total = runs.count.withLock { $0 }
            let claimed = try await withAuditStore(url) { store -> Int in
                if let postgres = store as? Functions.PostgresDatabase {
                    return try await postgres.client.query("SELECT count(*)::int FROM timer_runs WHERE function = 'Tick'", logger: logger)
                        .decode(Int.self).reduce(0, +)
                }
                let sqlite = try #require(store as? SQLiteDatabase)
                return try await sqlite.run("SELECT count(*) AS n FROM timer_runs WHERE function = 'Tick'", []).first?.column("n")?.integer ?? -1
            }
            #expect(total >= 2, "the timer fired (\(total))")
            #expect(total == claimed, "each of the \(claimed) occurrences ran once, not once per instance (\(total) runs)")
        }
        switch backend {
        case .postgres: try await ScratchDatabase.with { database in try await run(database.url) }
        case .sqlite: try await run(try Backend.sqlite.databaseURL())
        }
    }
}

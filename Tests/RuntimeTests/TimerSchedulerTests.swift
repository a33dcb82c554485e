import Foundation
import TestSupport
import HummingbirdTesting
import NIOCore
import Testing

@testable import FunctionRuntime

@Suite struct TimerSchedulerTests {
    @Test func firesOnASecondsScheduleAndByHandThroughTheAdminAPI() async throws {
        let recorder = InvocationRecorder()
        let root = try makeScriptRoot(
            manifest: manifestJSON(
                timerFunction("EverySecond", schedule: "* * * * * *"),
                timerFunction("Yearly", schedule: "0 0 0 1 1 *")))
        let module = TestModule { context in
            context.functions.register("EverySecond", timer: { info, _ in await recorder.record("EverySecond", info) })
            context.functions.register("Yearly", timer: { info, _ in await recorder.record("Yearly", info) })
        }
        let logs = CapturedLogs()
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, port: 0), module: module, environment: [:], logger: logs.logger())
        try await host.application().test(.live) { client in
            #expect(await recorder.wait(for: "EverySecond", count: 2, timeout: .seconds(20)))
            #expect(await recorder.count("Yearly") == 0)

            try await client.execute(uri: "/admin/functions/Yearly", method: .post, body: ByteBuffer(string: #"{"input":""}"#)) {
                response in
                #expect(response.status == .accepted)
            }
            #expect(await recorder.wait(for: "Yearly", count: 1, timeout: .seconds(20)))
            try await client.execute(uri: "/admin/functions/yearly", method: .post) { response in
                #expect(response.status == .accepted)  // names are case-insensitive; an empty body is accepted
            }
            #expect(await recorder.wait(for: "Yearly", count: 2, timeout: .seconds(20)))
        }
        let scheduled = await recorder.invocations.filter { $0.name == "EverySecond" }
        // (IsPastDue is not asserted here: on a loaded machine an occurrence may legitimately start > 1 s late.)
        // Consecutive occurrences land on distinct whole seconds.
        let seconds = scheduled.map { Int($0.at.timeIntervalSince1970) }
        #expect(Set(seconds).count == seconds.count)
        #expect(logs.text.contains(#"Executing 'Functions.Yearly' (Reason='This function was programmatically called via the host APIs."#))
        #expect(logs.text.contains("Executed 'Functions.EverySecond' (Succeeded"))
    }

    @Test func missedOccurrenceRunsOnceAsPastDueAtStartup() async throws {
        let recorder = InvocationRecorder()
        let hourAgo = Date().addingTimeInterval(-3600)
        let monitor = InMemoryScheduleMonitor(statuses: [
            "Hourly": ScheduleStatus(last: hourAgo.addingTimeInterval(-3600), next: hourAgo, lastUpdated: hourAgo)
        ])
        let root = try makeScriptRoot(manifest: manifestJSON(timerFunction("Hourly", schedule: "0 0 * * * *")))
        let module = TestModule { context in
            context.functions.register("Hourly", timer: { info, _ in await recorder.record("Hourly", info) })
            context.scheduleMonitor = monitor
        }
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, port: 0), module: module, environment: [:], logger: CapturedLogs().logger())
        try await host.application().test(.live) { _ in
            #expect(await recorder.wait(for: "Hourly", count: 1, timeout: .seconds(20)))
        }
        let first = try #require(await recorder.invocations.first)
        #expect(first.info.isPastDue)
        #expect(first.info.scheduleStatus?.last == hourAgo.addingTimeInterval(-3600))
        #expect(await recorder.count("Hourly") == 1)
        let updated = await monitor.status(of: "Hourly")
        #expect(updated?.last == hourAgo)
        #expect(updated.map { $0.next > Date() } == true)
    }

    @Test func runOnStartupFiresOnceWithoutWaiting() async throws {
        let recorder = InvocationRecorder()
        let root = try makeScriptRoot(manifest: manifestJSON(timerFunction("Boot", schedule: "0 0 0 1 1 *", runOnStartup: true)))
        let module = TestModule { context in
            context.functions.register("Boot", timer: { info, _ in await recorder.record("Boot", info) })
        }
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, port: 0), module: module, environment: [:], logger: CapturedLogs().logger())
        try await host.application().test(.live) { _ in
            #expect(await recorder.wait(for: "Boot", count: 1, timeout: .seconds(20)))
        }
        #expect(await recorder.invocations.first?.info.isPastDue == false)
    }

    @Test func failingTimerIsCountedAndLogged() async throws {
        struct Broken: Error {}
        let root = try makeScriptRoot(manifest: manifestJSON(timerFunction("Flaky", schedule: "* * * * * *")))
        let attempts = InvocationRecorder()
        let module = TestModule { context in
            context.functions.register("Flaky", timer: { info, _ in
                await attempts.record("Flaky", info)
                throw Broken()
            })
        }
        let logs = CapturedLogs()
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, port: 0), module: module, environment: [:], logger: logs.logger())
        try await host.application().test(.live) { client in
            #expect(await attempts.wait(for: "Flaky", count: 1, timeout: .seconds(20)))
            let series = #"fnhost_function_invocations_total{function="Flaky",trigger="timerTrigger",outcome="failure"}"#
            var counted = false
            let deadline = ContinuousClock.now + .seconds(20)
            while !counted, ContinuousClock.now < deadline {
                counted = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body).contains(series) }
                if !counted { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(counted)
        }
        #expect(logs.text.contains("Executed 'Functions.Flaky' (Failed"))
    }
}

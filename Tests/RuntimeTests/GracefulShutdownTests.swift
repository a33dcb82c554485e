import AsyncHTTPClient
import Foundation
import TestSupport
import NIOCore
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@testable import FunctionRuntime

/// SIGTERM's path: graceful shutdown lets the in-flight request and the running timer
/// invocation finish, then everything stops.
@Suite struct GracefulShutdownTests {
    @Test func drainsInFlightWorkThenStops() async throws {
        let recorder = InvocationRecorder()
        let started = InvocationRecorder()
        let root = try makeScriptRoot(
            manifest: manifestJSON(httpFunction("Slow", route: "slow"), timerFunction("LongTimer", schedule: "0 0 0 1 1 *")))
        let module = TestModule { context in
            // `try await`: a cancelled handler throws (500, no record), so draining and cancelling differ.
            context.functions.register("Slow", http: { _ in
                await started.record("Slow", TimerInfo(isPastDue: false))
                let began = ContinuousClock.now
                try await Task.sleep(for: .milliseconds(800))
                guard !Task.isCancelled, ContinuousClock.now - began >= .milliseconds(800) else { throw CancellationError() }
                return .json(Array(#"{"slow":true}"#.utf8))
            })
            // Longer than the request: the scheduler is told to stop (after the HTTP server drained)
            // while this still runs, so a scheduler that cancelled instead of draining would lose it.
            context.functions.register("LongTimer", timer: { info, _ in
                await started.record("LongTimer", info)
                let began = ContinuousClock.now
                try await Task.sleep(for: .milliseconds(2000))
                guard !Task.isCancelled, ContinuousClock.now - began >= .milliseconds(2000) else { return }
                await recorder.record("LongTimer", info)
            })
        }
        let port = Mutex(0)
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, port: 0), module: module, environment: [:], logger: CapturedLogs().logger())
        let app = host.application { bound in port.withLock { $0 = bound } }

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let configuration = ServiceGroupConfiguration(services: [app], logger: CapturedLogs().logger())
                    try await ServiceGroup(configuration: configuration).run()
                }
                while port.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(20)) }
                let url = "http://127.0.0.1:\(port.withLock { $0 })"
                #expect(host.scheduler.invokeNow("LongTimer"))
                let response = Task {
                    let reply = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/slow"), timeout: .seconds(10))
                    return (Int(reply.status.code), String(buffer: try await reply.body.collect(upTo: 1024)))
                }
                #expect(await started.wait(for: "Slow", count: 1, timeout: .seconds(20)))
                #expect(await started.wait(for: "LongTimer", count: 1, timeout: .seconds(20)))
                trigger.triggerGracefulShutdown()
                let (status, body) = try await response.value
                #expect(status == 200)
                #expect(body == #"{"slow":true}"#)
                try await group.waitForAll()
            }
        }
        #expect(await recorder.count("LongTimer") == 1, "the running timer invocation finished before the scheduler stopped")
    }
}

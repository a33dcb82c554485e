import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Logging
import Testing
import TestSupport

@testable import FunctionRuntime

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The hot-reload supervisor in this process (the end-to-end run through `fnhost start --watch`
/// is `HotReloadTests`), with the real `fnhost` binary as each generation and a build script of the
/// test's own.
@Suite struct HotReloadSupervisorTests {
    @Test func answers503UntilABuildServesThenForwardsAndStopsItsGeneration() async throws {
        let root = try ScriptRoot.repository(localSettings: #"{"IsEncrypted":false,"Values":{"ENVIRONMENT":"development"}}"#)
        let folder = URL(fileURLWithPath: root)
        try Data("[ -f fail-build ] && { echo 'Sources/A.swift:1:1: error: not yet' >&2; exit 1; }; exit 0\n".utf8)
            .write(to: folder.appendingPathComponent("build.sh"))
        try Data().write(to: folder.appendingPathComponent("fail-build"))
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("Sources/Tests"), withIntermediateDirectories: true)
        let source = folder.appendingPathComponent("Sources/A.swift")
        try Data("let a = 1\n".utf8).write(to: source)
        var options = WatchOptions(packagePath: root, scriptRoot: root, buildCommand: "sh build.sh", binary: FnhostProcess.binary)
        options.interval = .milliseconds(100)
        let logs = CapturedLogs()
        let router = GenerationRouter()
        let port = try FreePort.pick()
        let supervisor = Task {
            try await HotReload.run(options, address: "127.0.0.1", port: port, logger: logs.logger(), router: router, stopsOnSignals: false)
        }
        let base = "http://127.0.0.1:\(port)"

        // The first build fails: nothing serves, every request is a 503 in the contract's shape.
        #expect(await eventually(timeout: .seconds(30)) { logs.text.contains("Build failed; nothing is serving yet") })
        let (waiting, waitingBody, waitingHeaders) = try await HTTP.get(base + "/health", headers: ["X-Request-Id": "req-waiting-1"])
        #expect(waiting == 503)
        #expect(waitingBody.contains(#""code":"SERVICE_UNAVAILABLE""#) && waitingBody.contains(#""request_id":"req-waiting-1""#))
        #expect(waitingHeaders["X-Request-Id"] == "req-waiting-1")

        // A change in Tests/ is not a change; one in Sources/ is, and the fixed build serves.
        try FileManager.default.removeItem(at: folder.appendingPathComponent("fail-build"))
        try Data("let b = 1\n".utf8).write(to: folder.appendingPathComponent("Sources/Tests/B.swift"))
        try await Task.sleep(for: .milliseconds(600))
        #expect(router.current == nil, "a file under Tests/ does not trigger a build")
        try Data("let a = 2\n".utf8).write(to: source)
        #expect(await eventually(timeout: .seconds(60)) { router.current != nil }, "\(logs.text)")
        let target = try #require(router.current)
        #expect(target.generation == 1)

        // Forwarded as sent: method, path and query, body, request id; the answer comes back whole.
        let (status, body, headers) = try await HTTP.get(base + "/health", headers: ["X-Request-Id": "req-forwarded-1"])
        #expect(status == 200 && body == #"{"status":"ok"}"#)
        #expect(headers["X-Request-Id"] == "req-forwarded-1")
        let (created, createdBody, _) = try await HTTP.post(
            base + "/api/leads?x=1", body: #"{"name":"A","email":"a@x.example"}"#, headers: ["Content-Type": "application/json"])
        #expect(created == 401 && createdBody.contains(#""code":"UNAUTHENTICATED""#), "the generation's own answer: \(createdBody)")
        let (admin, adminBody, _) = try await HTTP.get(base + "/admin/host/status")
        #expect(admin == 200 && adminBody.contains(#""state":"Running""#), "loopback clients reach the admin API")
        #expect(router.inFlight(target.generation) == 0, "every forwarded request released")

        // Cancelled: the generation is stopped and the port freed.
        supervisor.cancel()
        _ = try? await supervisor.value
        #expect(FreePort.refuses(target.port), "the generation stopped")
        #expect(await eventually(timeout: .seconds(10)) { FreePort.refuses(port) }, "the port is released")
        #expect(router.current == nil)
    }

    /// The proxy's own answers, in the contract's shape: a generation that refuses connections is
    /// "restarting" (nothing was sent), a declared body over the limit is 413 without being read or
    /// forwarded, and nothing serving yet is 503.
    @Test func theProxysOwnAnswersAreContractErrors() async throws {
        let client = HotReload.proxyClient()
        let router = GenerationRouter()
        let refusing = try RefusingPort()
        let proxy = ReloadProxy(router: router, client: client, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        do {
            try await Application(responder: proxy).test(.live) { test in
                func send(_ headers: HTTPFields = [:], body: ByteBuffer? = nil) async throws -> (HTTPResponse.Status, String, HTTPFields) {
                    try await test.execute(uri: "/api/leads", method: .post, headers: headers, body: body) {
                        ($0.status, String(buffer: $0.body), $0.headers)
                    }
                }
                let (idle, idleBody, _) = try await send()
                #expect(idle == .serviceUnavailable && idleBody.contains(#""code":"SERVICE_UNAVAILABLE""#))
                _ = router.switchTo(.init(generation: 1, port: refusing.port))
                let (refused, refusedBody, refusedHeaders) = try await send([.requestID: "req-refused-1"], body: ByteBuffer(string: "{}"))
                #expect(refused == .serviceUnavailable)
                #expect(refusedBody.contains("restarting; try again") && refusedBody.contains(#""request_id":"req-refused-1""#), "\(refusedBody)")
                #expect(refusedHeaders[.requestID] == "req-refused-1")
                #expect(router.inFlight(1) == 0)
                let (large, largeBody, _) = try await send([.contentLength: String(HTTPFront.maxPayloadSize + 1)])
                #expect(large == .contentTooLarge && largeBody.contains(#""code":"PAYLOAD_TOO_LARGE""#), "\(largeBody)")
            }
        } catch {
            refusing.close()
            try await client.shutdown()
            throw error
        }
        refusing.close()
        try await client.shutdown()
    }

    @Test func snapshotsNameWhatChanged() throws {
        let root = try ScriptRoot.repository()
        let folder = URL(fileURLWithPath: root)
        let before = SourceSnapshot.scan(packagePath: root, scriptRoot: root)
        #expect(before.files.count == 1, "function.json only")
        try Data("x\n".utf8).write(to: folder.appendingPathComponent("Main.swift"))
        try Data("{}".utf8).write(to: folder.appendingPathComponent("local.settings.json"))
        try Data("not swift".utf8).write(to: folder.appendingPathComponent("notes.txt"))
        let after = SourceSnapshot.scan(packagePath: root, scriptRoot: root)
        #expect(after.changes(since: before).map { URL(fileURLWithPath: $0).lastPathComponent } == ["Main.swift", "local.settings.json"])
        try FileManager.default.removeItem(at: folder.appendingPathComponent("Main.swift"))
        let removed = SourceSnapshot.scan(packagePath: root, scriptRoot: root)
        #expect(removed.changes(since: after).map { URL(fileURLWithPath: $0).lastPathComponent } == ["Main.swift"])
        #expect(removed != after && removed.changes(since: removed).isEmpty)
    }

    @Test func theRouterCountsRequestsPerGeneration() {
        let router = GenerationRouter()
        #expect(router.acquire() == nil)
        #expect(router.switchTo(.init(generation: 1, port: 1001)) == nil)
        let first = router.acquire()
        let second = router.acquire()
        #expect(first == .init(generation: 1, port: 1001) && router.inFlight(1) == 2)
        #expect(router.switchTo(.init(generation: 2, port: 1002)) == .init(generation: 1, port: 1001))
        #expect(router.acquire()?.generation == 2)
        if let first { router.release(first) }
        #expect(router.inFlight(1) == 1)
        if let second { router.release(second) }
        #expect(router.inFlight(1) == 0 && router.inFlight(2) == 1)
    }
}

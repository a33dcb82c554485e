import Foundation
import TestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import FunctionRuntime

/// `fnhost serve` speaks the Azure custom-handler protocol; payloads below are shaped exactly like
/// the host's (see shared/reference/azure-functions.md §1.3–1.4).
@Suite struct CustomHandlerTests {
    private static let manifest = manifestJSON(
        httpFunction("Inspect", route: "api/inspect/{id}", methods: ["get", "post", "put"]),
        #""Returning":{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":["get"],"route":"api/returning"},{"type":"http","direction":"out","name":"$return"}]}"#,
        httpFunction("Streaming", route: "api/streaming", methods: ["get"]),
        httpFunction("Echo", route: "api/echo/{id}", methods: ["get", "post"]),
        httpFunction("Binary", route: "api/binary", methods: ["get"]),
        timerFunction("Nightly", schedule: "0 0 2 * * *"),
        timerFunction("Broken", schedule: "0 0 3 * * *"))

    /// Echoes what the function received, so the test sees the rebuilt request.
    private static func module(recorder: InvocationRecorder) -> TestModule {
        TestModule { context in
            context.functions.register("Inspect", http: { request in
                var headers = HTTPFields()
                headers[.contentType] = "text/plain"
                let bodyBase64 = Data(request.body.readableBytesView).base64EncodedString()
                let text = "\(request.method.rawValue) \(request.path) id=\(request.pathParameters["id"] ?? "-") q=\(request.query["q"] ?? "-") type=\(request.headers[.contentType] ?? "-") body=\(bodyBase64)"
                return FunctionResponse(status: .created, headers: headers, body: .bytes(ByteBuffer(string: text)))
            })
            context.functions.register("Echo", http: { request in
                let multi = request.headers[values: HTTPField.Name("X-Multi")!].joined(separator: "|")
                let single = request.headers[HTTPField.Name("X-Single")!] ?? "-"
                let text = "id=\(request.pathParameters["id"] ?? "-") multi=\(multi) single=\(single) body=\(String(buffer: request.body))"
                return FunctionResponse(status: .ok, headers: [.contentType: "text/plain"], body: .bytes(ByteBuffer(string: text)))
            })
            context.functions.register("Binary", http: { _ in
                var headers: HTTPFields = [.contentType: "application/octet-stream"]
                headers.append(HTTPField(name: .vary, value: "Accept"))
                headers.append(HTTPField(name: .vary, value: "Origin"))
                return FunctionResponse(status: .ok, headers: headers, body: .bytes(ByteBuffer(bytes: [0xFF, 0x00, 0x80, 0x41])))
            })
            context.functions.register("Returning", http: { _ in .json(Array(#"{"ok":true}"#.utf8)) })
            context.functions.register("Streaming", http: { _ in
                FunctionResponse(status: .ok, headers: [.contentType: "text/csv"], body: .stream { writer in
                    for index in 0..<3 { try await writer.write(ByteBuffer(string: "row\(index)\n")) }
                })
            })
            context.functions.register("Nightly", timer: { info, _ in await recorder.record("Nightly", info) })
            context.functions.register("Broken", timer: { _, _ in throw FunctionError.internalError })
        }
    }

    private static func withServe(
        recorder: InvocationRecorder = InvocationRecorder(), _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let root = try makeScriptRoot(manifest: manifest)
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, mode: .customHandler), module: module(recorder: recorder),
            environment: ["FUNCTIONS_CUSTOMHANDLER_PORT": "0"], logger: CapturedLogs().logger())
        try await host.application().test(.live, test)
    }

    private static func invoke(
        _ client: any TestClientProtocol, _ function: String, _ payload: String
    ) async throws -> (HTTPResponse.Status, String, HTTPFields) {
        try await client.execute(
            uri: "/\(function)", method: .post,
            headers: [.contentType: "application/json; charset=utf-8", HTTPField.Name("X-Azure-Functions-InvocationId")!: "11111111-2222-4333-8444-555555555555"],
            body: ByteBuffer(string: payload)
        ) { response in (response.status, String(buffer: response.body), response.headers) }
    }

    @Test func readinessProbe() async throws {
        try await Self.withServe { client in
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func httpGetWithQuery() async throws {
        try await Self.withServe { client in
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/inspect/42?q=hello%20there","Method":"GET","Query":{"q":"hello there"},"Headers":{"Accept":["*/*"],"X-Request-Id":["req-get-1"]},"Params":{"id":"42"},"Identities":[]}},"Metadata":{"Query":{"q":"hello there"},"Headers":{"Accept":"*/*"},"id":"42","q":"hello there","sys":{"MethodName":"Inspect","UtcNow":"2026-11-22T08:00:00.000Z","RandGuid":"35e6"}}}"#
            let (status, body, headers) = try await Self.invoke(client, "Inspect", payload)
            #expect(status == .ok)
            #expect(headers[.contentType] == "application/json; charset=utf-8")
            #expect(body == #"{"Outputs":{"res":{"statusCode":201,"headers":{"Content-Type":"text/plain","X-Request-Id":"req-get-1"},"body":"GET /api/inspect/42 id=42 q=hello there type=- body="}},"Logs":[],"ReturnValue":null}"#)
        }
    }

    @Test func httpPostWithJSONBody() async throws {
        try await Self.withServe { client in
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/inspect/7","Method":"POST","Query":{},"Headers":{"Content-Type":["application/json"]},"Params":{"id":"7"},"Body":"{\"name\":\"Ada\"}"}},"Metadata":{}}"#
            let (status, body, _) = try await Self.invoke(client, "Inspect", payload)
            #expect(status == .ok)
            let bodyBase64 = Data(#"{"name":"Ada"}"#.utf8).base64EncodedString()
            #expect(body == #"{"Outputs":{"res":{"statusCode":201,"headers":{"Content-Type":"text/plain","X-Request-Id":"11111111-2222-4333-8444-555555555555"},"body":"POST /api/inspect/7 id=7 q=- type=application/json body=\#(bodyBase64)"}},"Logs":[],"ReturnValue":null}"#)
        }
    }

    @Test func binaryBodyArrivesAsBase64() async throws {
        try await Self.withServe { client in
            let bytes: [UInt8] = [0, 1, 2, 0xFE, 0xFF, 0x80]
            let encoded = Data(bytes).base64EncodedString()
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/inspect/9","Method":"PUT","Query":{},"Headers":{"Content-Type":["application/octet-stream"]},"Params":{"id":"9"},"Body":"\#(encoded)"}},"Metadata":{}}"#
            let (status, body, _) = try await Self.invoke(client, "Inspect", payload)
            #expect(status == .ok)
            #expect(body.contains(#""body":"PUT /api/inspect/9 id=9 q=- type=application/octet-stream body=\#(encoded)""#))
        }
    }

    /// The host's `Outputs.res` of an invocation answer, decoded.
    private static func output(_ body: String) throws -> [String: Any] {
        let envelope = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let outputs = try #require(envelope["Outputs"] as? [String: Any])
        return try #require(outputs["res"] as? [String: Any])
    }

    /// Header values come as arrays (several values of one name, kept in order) or as plain strings;
    /// a JSON body may arrive as an object rather than a string and reaches the function as its JSON.
    @Test func headerArraysStringsAndAnObjectBody() async throws {
        try await Self.withServe { client in
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/echo/5","Method":"POST","Query":{},"Headers":{"X-Multi":["a","b"],"X-Single":"s","Content-Type":["application/json"]},"Params":{"id":"5"},"Body":{"name":"Ada","n":[1,2]}}},"Metadata":{}}"#
            let (status, body, _) = try await Self.invoke(client, "Echo", payload)
            #expect(status == .ok)
            let text = try #require(try Self.output(body)["body"] as? String)
            #expect(text.hasPrefix("id=5 multi=a|b single=s body="), "\(text)")
            let echoed = try #require(text.split(separator: "body=", maxSplits: 1).last)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(echoed.utf8)) as? [String: Any])
            #expect(object["name"] as? String == "Ada")
            #expect(object["n"] as? [Int] == [1, 2])
        }
    }

    /// A payload without `Params` (older hosts, proxies): the route's parameters are matched from the URL.
    @Test func routeParametersFallBackToTheURL() async throws {
        try await Self.withServe { client in
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/echo/77?x=1","Method":"GET","Query":{},"Headers":{}}},"Metadata":{}}"#
            let (status, body, _) = try await Self.invoke(client, "Echo", payload)
            #expect(status == .ok)
            #expect((try Self.output(body)["body"] as? String)?.hasPrefix("id=77 ") == true, "\(body)")
        }
    }

    /// A body that is not UTF-8 goes back base64-encoded; repeated response headers are merged
    /// into one comma-separated value (the envelope holds one value per name).
    @Test func binaryResponsesAreBase64AndRepeatedHeadersMerge() async throws {
        try await Self.withServe { client in
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/binary","Method":"GET","Query":{},"Headers":{}}},"Metadata":{}}"#
            let (status, body, _) = try await Self.invoke(client, "Binary", payload)
            #expect(status == .ok)
            let response = try Self.output(body)
            #expect(response["body"] as? String == Data([0xFF, 0x00, 0x80, 0x41]).base64EncodedString())
            let headers = try #require(response["headers"] as? [String: String])
            #expect(headers["Vary"] == "Accept, Origin")
            #expect(headers["Content-Type"] == "application/octet-stream")
        }
    }

    /// A body over 1 MiB inside a payload under the 4 MiB cap: the function never runs, the
    /// envelope carries 413 in the contract's shape.
    @Test func anOversizedBodyInsideTheEnvelopeIs413() async throws {
        try await Self.withServe { client in
            let big = String(repeating: "x", count: (1 << 20) + 1)
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/echo/1","Method":"POST","Query":{},"Headers":{"Content-Type":["text/plain"]},"Params":{"id":"1"},"Body":"\#(big)"}},"Metadata":{}}"#
            let (status, body, _) = try await Self.invoke(client, "Echo", payload)
            #expect(status == .ok, "the invocation itself succeeded")
            let response = try Self.output(body)
            #expect(response["statusCode"] as? Int == 413)
            let inner = try #require(response["body"] as? String)
            #expect(inner.contains(#""code":"PAYLOAD_TOO_LARGE""#), "\(inner)")
            #expect(!inner.contains("id=1"), "the function did not run")
        }
    }

    @Test func strictInvocations() async throws {
        try await Self.withServe { client in
            // A method the binding does not accept: 405 with Allow, the function does not run.
            let delete = #"{"Data":{"req":{"Url":"http://localhost:7071/api/returning","Method":"DELETE","Query":{},"Headers":{},"Params":{}}},"Metadata":{}}"#
            let (status, body, headers) = try await Self.invoke(client, "Returning", delete)
            #expect(status == .methodNotAllowed && body.contains("METHOD_NOT_ALLOWED"))
            #expect(headers[.allow] == "GET")
            // No Url: 400, never a run with "/".
            let noURL = #"{"Data":{"req":{"Method":"GET","Query":{},"Headers":{},"Params":{}}},"Metadata":{}}"#
            let (missing, message, _) = try await Self.invoke(client, "Returning", noURL)
            #expect(missing == .badRequest && message.contains("Url is missing"))
            // Over 4 MiB: 413 naming the payload's limit, not the body's.
            let huge = #"{"Data":{"req":{"Url":"/api/returning","Method":"GET","Body":""# + String(repeating: "x", count: 4 << 20) + #""}}}"#
            let (large, text, _) = try await Self.invoke(client, "Returning", huge)
            #expect(large == .contentTooLarge && text.contains("invocation payload exceeds 4 MiB"))
            // Deeply nested JSON is refused after one pass, not parsed for seconds.
            let deep = #"{"Data":{"req":"# + String(repeating: "[", count: 100_000) + "}}"
            let (nested, _, _) = try await Self.invoke(client, "Returning", deep)
            #expect(nested == .badRequest)
        }
    }

    /// Mutation fuzzing of the invocation decoder through the live handler: byte flips, truncations,
    /// duplications and type swaps of real payloads never crash it or make it answer 500, and it still
    /// answers afterwards. (The JSON reader under it has its own libFuzzer target, `make fuzz`.)
    @Test func mutatedInvocationsNeverCrashTheDecoder() async throws {
        let seeds = [
            #"{"Data":{"req":{"Url":"http://localhost:7071/api/inspect/42?q=a","Method":"GET","Query":{"q":"a"},"Headers":{"Accept":["*/*"]},"Params":{"id":"42"}}},"Metadata":{}}"#,
            #"{"Data":{"req":{"Url":"/api/inspect/7","Method":"POST","Headers":{"Content-Type":["application/octet-stream"]},"Params":{"id":"7"},"Body":"AAEC"}},"Metadata":{}}"#,
            #"{"Data":{"req":{"Url":"/api/inspect/7","Method":"PUT","Headers":{"Content-Type":"application/json"},"Body":{"a":[1,2,{"b":null}]}}}}"#,
        ]
        let pieces = [#"""#, "{", "}", "[", "]", ":", ",", "\\u0000", "\\ud800", "null", "1e999", "-", "\\", "\u{0}", "\u{FFFF}", "é", "e\u{301}"]
        try await Self.withServe { client in
            var generator = SystemRandomNumberGenerator()
            for index in 0..<400 {
                var bytes = Array(seeds[index % seeds.count].utf8)
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    guard !bytes.isEmpty else { break }
                    let at = Int.random(in: 0..<bytes.count, using: &generator)
                    switch Int.random(in: 0..<4, using: &generator) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &generator)
                    case 1: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...8, using: &generator)))
                    case 2: bytes.insert(contentsOf: Array(pieces.randomElement(using: &generator)!.utf8), at: at)
                    default: bytes = Array(bytes[..<at]) + Array(bytes[at...]) + Array(bytes[at...])
                    }
                }
                let status = try await client.execute(
                    uri: "/Inspect", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: bytes)
                ) { $0.status }
                #expect(status.code < 500, "payload \(String(decoding: bytes, as: UTF8.self).prefix(200))")
            }
            try await client.execute(uri: "/", method: .get) { #expect($0.status == .ok, "still serving") }
        }
    }

    @Test func aStreamedResponseIsCollectedIntoTheEnvelope() async throws {
        try await Self.withServe { client in
            let payload = #"{"Data":{"req":{"Url":"/api/streaming","Method":"GET","Headers":{}}},"Metadata":{}}"#
            let (status, body, _) = try await Self.invoke(client, "Streaming", payload)
            #expect(status == .ok)
            #expect(body.contains(#""body":"row0\nrow1\nrow2\n""#), "\(body)")
        }
    }

    @Test func returnBindingPutsTheResponseInReturnValue() async throws {
        try await Self.withServe { client in
            let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/api/returning","Method":"GET","Query":{},"Headers":{"X-Request-Id":["r-9"]},"Params":{}}},"Metadata":{}}"#
            let (_, body, _) = try await Self.invoke(client, "Returning", payload)
            #expect(body == #"{"Outputs":{},"Logs":[],"ReturnValue":{"statusCode":200,"headers":{"Content-Type":"application/json; charset=utf-8","X-Request-Id":"r-9"},"body":"{\"ok\":true}"}}"#)
        }
    }

    @Test func timerWithIsPastDueAndScheduleStatus() async throws {
        let recorder = InvocationRecorder()
        try await Self.withServe(recorder: recorder) { client in
            let payload = #"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-11-21T02:00:00.0105419-05:00","Next":"2026-11-22T02:00:00-05:00","LastUpdated":"2026-11-21T02:00:01.5+00:00"},"IsPastDue":true}},"Metadata":{"sys":{"MethodName":"Nightly","UtcNow":"2026-11-22T08:40:45.004275Z","RandGuid":"35e6a6a4-1111-4a7c-9a3b-111111111111"}}}"#
            let (status, body, headers) = try await Self.invoke(client, "Nightly", payload)
            #expect(status == .ok)
            #expect(headers[.contentType] == "application/json; charset=utf-8")
            #expect(body == #"{"Outputs":{},"Logs":[],"ReturnValue":null}"#)
            let nullStatus = #"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{}}}"#
            let (secondStatus, _, _) = try await Self.invoke(client, "Nightly", nullStatus)
            #expect(secondStatus == .ok)
        }
        let invocations = await recorder.invocations
        #expect(invocations.count == 2)
        let first = try #require(invocations.first?.info)
        #expect(first.isPastDue)
        let last = try #require(first.scheduleStatus?.last.timeIntervalSince1970)
        #expect(abs(last - 1_795_244_400.0105419) < 1e-6)
        #expect(first.scheduleStatus?.next == Date(timeIntervalSince1970: 1_795_330_800))
        #expect(first.scheduleStatus?.lastUpdated == Date(timeIntervalSince1970: 1_795_226_401.5))
        #expect(invocations.last?.info == TimerInfo(isPastDue: false, scheduleStatus: nil))
    }

    @Test func failingTimerFailsTheInvocation() async throws {
        try await Self.withServe { client in
            let (status, body, _) = try await Self.invoke(client, "Broken", #"{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}"#)
            #expect(status == .internalServerError)
            #expect(body.contains(#""code":"INTERNAL""#))
        }
    }

    @Test func malformedPayloadsAreRejected() async throws {
        try await Self.withServe { client in
            let badBase64 = #"{"Data":{"req":{"Url":"/api/inspect/1","Method":"PUT","Headers":{"Content-Type":["application/octet-stream"]},"Body":"***"}}}"#
            let cases = [("Nightly", "not json"), ("Inspect", #"{"Metadata":{}}"#), ("Inspect", #"{"Data":{"req":{"Url":"/x"}}}"#), ("Inspect", badBase64)]
            for (function, payload) in cases {
                let (status, body, _) = try await Self.invoke(client, function, payload)
                #expect(status == .badRequest, "\(payload)")
                #expect(body.contains(#""code":"VALIDATION_FAILED""#))
            }
        }
    }

    @Test func forwardedRequestsReachTheRoutes() async throws {
        try await Self.withServe { client in
            try await client.execute(
                uri: "/api/inspect/5?q=fwd", method: .get,
                headers: [HTTPField.Name("X-Azure-Functions-InvocationId")!: "abc-1"]
            ) { response in
                #expect(response.status == .created)
                #expect(String(buffer: response.body) == "GET /api/inspect/5 id=5 q=fwd type=- body=")
            }
            try await client.execute(uri: "/admin/functions", method: .get) { response in
                #expect(response.status == .notFound, "no admin API under the Azure host")
            }
        }
    }

    @Test func scheduleIsNotRunByTheHandler() async throws {
        let recorder = InvocationRecorder()
        let root = try makeScriptRoot(manifest: manifestJSON(timerFunction("Tick", schedule: "* * * * * *", runOnStartup: true)))
        let module = TestModule { context in
            context.functions.register("Tick", timer: { info, _ in await recorder.record("Tick", info) })
        }
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, mode: .customHandler), module: module,
            environment: ["FUNCTIONS_CUSTOMHANDLER_PORT": "0"], logger: CapturedLogs().logger())
        try await host.application().test(.live) { _ in
            try await Task.sleep(for: .milliseconds(2200))
        }
        #expect(await recorder.count("Tick") == 0, "the Azure host fires timers, not fnhost serve")
    }

    /// The environment each build of a module sees, in order.
    private func environments(
        defaults: [String: String], builds: [(HostingMode, [String: String])]
    ) async throws -> [DeploymentEnvironment] {
        let root = try makeScriptRoot(manifest: manifestJSON(timerFunction("Tick", schedule: "0 0 0 1 1 *")))
        let seen = Mutex<[DeploymentEnvironment]>([])
        let module = TestModule(settingDefaults: defaults) { context in
            let environment = context.environment
            seen.withLock { $0.append(environment) }
            context.functions.register("Tick", timer: { _, _ in })
        }
        for (mode, environment) in builds {
            _ = try await FunctionHost.build(
                options: mode == .customHandler ? .init(scriptRoot: root, mode: .customHandler) : .init(scriptRoot: root, port: 0),
                module: module, environment: environment, logger: CapturedLogs().logger())
        }
        return seen.withLock { $0 }
    }

    @Test func serveWithoutEnvironmentIsProduction() async throws {
        let seen = try await environments(
            defaults: [:], builds: [(.customHandler, ["FUNCTIONS_CUSTOMHANDLER_PORT": "0"]), (.emulator, [:])])
        #expect(seen == [.production, .development], "serve defaults to production, start to development")
    }

    /// A module's default cannot make `fnhost serve` development: only the deployment says so (the module once
    /// defaulted ENVIRONMENT to development and every Azure deployment that forgot the setting ran open).
    @Test func aModuleDefaultCannotMakeServeDevelopment() async throws {
        let seen = try await environments(
            defaults: ["ENVIRONMENT": "development"],
            builds: [
                (.customHandler, ["FUNCTIONS_CUSTOMHANDLER_PORT": "0"]),
                (.customHandler, ["FUNCTIONS_CUSTOMHANDLER_PORT": "0", "ENVIRONMENT": "staging"]),
            ])
        #expect(seen == [.production, .staging], "the module's default is ignored; the deployment's value wins")
    }

    @Test func serveRequiresThePort() async throws {
        let root = try makeScriptRoot(manifest: manifestJSON(timerFunction("Tick", schedule: "0 0 0 1 1 *")))
        let module = TestModule { context in context.functions.register("Tick", timer: { _, _ in }) }
        await #expect {
            _ = try await FunctionHost.build(
                options: .init(scriptRoot: root, mode: .customHandler), module: module, environment: [:], logger: CapturedLogs().logger())
        } throws: { error in
            String(describing: error).contains("FUNCTIONS_CUSTOMHANDLER_PORT")
        }
    }

    @Test func iso8601AsTheHostWritesIt() {
        #expect(ISO8601.parse("2026-11-22T08:15:30Z") == Date(timeIntervalSince1970: 1_795_335_330))
        #expect(ISO8601.parse("2026-11-22T08:15:30.5+01:30") == Date(timeIntervalSince1970: 1_795_335_330.5 - 5400))
        #expect(ISO8601.parse("2026-11-22") == nil)
        #expect(ISO8601.parse("2026-13-22T08:15:30Z") == nil)
        #expect(ISO8601.parse("2026-11-22T08:15:30+0100") == nil)
    }
}

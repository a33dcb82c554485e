import Foundation
import TestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import FunctionRuntime

private struct Boom: Error, CustomStringConvertible {
    var description: String { "database password is hunter2" }
}

private func echoModule() -> TestModule {
    TestModule { context in
        context.functions.register("Echo", http: { request in
            .json { writer in
                writer.beginObject()
                writer.field("function", request.functionName)
                writer.field("id", request.pathParameters["id"])
                writer.field("q", request.query["q"])
                writer.field("body", String(buffer: request.body))
                writer.field("request_id", request.requestID)
                writer.endObject()
            }
        })
        context.functions.register("Fail", http: { _ in throw Boom() })
        context.functions.register("Reject", http: { _ in throw FunctionError.validationFailed("field 'name' is required") })
        context.functions.register("Stream", http: { _ in
            FunctionResponse(status: .ok, headers: [.contentType: "text/csv"], body: .stream { writer in
                for index in 0..<3 { try await writer.write(ByteBuffer(string: "row\(index)\n")) }
            })
        })
        context.functions.register("Tick", timer: { _, _ in })
    }
}

private let echoManifest = manifestJSON(
    httpFunction("Echo", route: "api/echo/{id}", methods: ["get", "post"]),
    httpFunction("Fail", route: "api/fail"),
    httpFunction("Reject", route: "api/reject", methods: ["post"]),
    httpFunction("Stream", route: "api/stream"),
    timerFunction("Tick", schedule: "0 0 0 1 1 *"))

private func withHost(
    environment: [String: String] = [:], logs: CapturedLogs = CapturedLogs(),
    _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
) async throws {
    let root = try makeScriptRoot(manifest: echoManifest)
    let host = try await FunctionHost.build(
        options: .init(scriptRoot: root, port: 0), module: echoModule(), environment: environment, logger: logs.logger())
    try await host.application().test(.live, test)
}

/// The contract's `error` object, or empty when the body is not one.
private func errorObject(_ buffer: ByteBuffer) -> [String: String] {
    let object = (try? JSONSerialization.jsonObject(with: Data(buffer: buffer))) as? [String: Any]
    return object?["error"] as? [String: String] ?? [:]
}

@Suite struct HTTPFrontTests {
    @Test func routesParametersQueryAndBody() async throws {
        try await withHost { client in
            try await client.execute(
                uri: "/api/echo/42?q=hello%20world", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"a":1}"#)
            ) { response in
                #expect(response.status == .ok)
                let object = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: String]
                #expect(object?["function"] == "Echo")
                #expect(object?["id"] == "42")
                #expect(object?["q"] == "hello world")
                #expect(object?["body"] == #"{"a":1}"#)
                #expect(object?["request_id"] == response.headers[.requestID])
            }
        }
    }

    @Test func requestIDIsKeptWhenSaneAndReplacedOtherwise() async throws {
        try await withHost { client in
            try await client.execute(uri: "/api/echo/1", method: .get, headers: [.requestID: "abc-123.x"]) { response in
                #expect(response.headers[.requestID] == "abc-123.x")
            }
            try await client.execute(uri: "/api/echo/1", method: .get, headers: [.requestID: "bad id\"<script>"]) { response in
                let id = try #require(response.headers[.requestID])
                #expect(id != "bad id\"<script>")
                #expect(RequestIDs.isSane(id) && id.count == 36)
            }
        }
    }

    @Test func runtimeErrorsUseTheContractShape() async throws {
        try await withHost { client in
            try await client.execute(uri: "/nope", method: .get) { response in
                #expect(response.status == .notFound)
                let error = errorObject(response.body)
                #expect(error["code"] == "NOT_FOUND")
                #expect(error["request_id"] == response.headers[.requestID])
            }
            try await client.execute(uri: "/api/fail", method: .delete) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET")
                #expect(errorObject(response.body)["code"] == "METHOD_NOT_ALLOWED")
            }
            let big = ByteBuffer(repeating: UInt8(ascii: "x"), count: (1 << 20) + 1)
            try await client.execute(uri: "/api/echo/1", method: .post, body: big) { response in
                #expect(response.status == .contentTooLarge)
                #expect(errorObject(response.body)["code"] == "PAYLOAD_TOO_LARGE")
            }
            let exact = ByteBuffer(repeating: UInt8(ascii: "x"), count: 1 << 20)
            try await client.execute(uri: "/api/echo/1", method: .post, body: exact) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/api/reject", method: .post) { response in
                #expect(response.status == .badRequest)
                let error = errorObject(response.body)
                #expect(error["code"] == "VALIDATION_FAILED")
                #expect(error["message"] == "field 'name' is required")
            }
        }
    }

    @Test func unexpectedErrorsAre500WithoutInternals() async throws {
        let logs = CapturedLogs()
        try await withHost(logs: logs) { client in
            try await client.execute(uri: "/api/fail", method: .get) { response in
                #expect(response.status == .internalServerError)
                let body = String(buffer: response.body)
                #expect(errorObject(response.body)["code"] == "INTERNAL")
                #expect(!body.contains("hunter2"))
                #expect(!body.contains("Boom"))
            }
        }
        #expect(!logs.text.contains("hunter2"))
        #expect(logs.text.contains("Boom"))
    }

    @Test func streamedBodiesArriveWhole() async throws {
        try await withHost { client in
            try await client.execute(uri: "/api/stream", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/csv")
                #expect(String(buffer: response.body) == "row0\nrow1\nrow2\n")
            }
        }
    }

    @Test func everyInvocationIsLoggedAsOneJSONLine() async throws {
        let logs = CapturedLogs()
        try await withHost(logs: logs) { client in
            try await client.execute(uri: "/api/echo/7", method: .get, headers: [.requestID: "req-7"]) { _ in }
        }
        #expect(logs.lines.count == logs.rawLineCount, "every line is a JSON object")
        let executed = logs.lines.filter { ($0["msg"] as? String)?.hasPrefix("Executed 'Functions.Echo'") == true }
        #expect(executed.count == 1)
        let line = try #require(executed.first)
        #expect(line["request_id"] as? String == "req-7")
        #expect(line["function"] as? String == "Echo")
        #expect(line["level"] as? String == "info")
        #expect(line["status"] as? Int == 200)
        #expect(line["outcome"] as? String == "success")
        #expect(line["duration_ms"] is Double)
        #expect((line["ts"] as? String)?.hasSuffix("Z") == true)
        let executing = logs.lines.filter { ($0["msg"] as? String)?.hasPrefix("Executing 'Functions.Echo'") == true }
        #expect(executing.count == 1)
    }

    @Test func metricsCountInvocationsPerFunction() async throws {
        try await withHost { client in
            for _ in 0..<3 { try await client.execute(uri: "/api/echo/1", method: .get) { _ in } }
            try await client.execute(uri: "/api/fail", method: .get) { _ in }
            try await client.execute(uri: "/nope", method: .get) { _ in }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                let text = String(buffer: response.body)
                #expect(text.contains(#"fnhost_function_invocations_total{function="Echo",trigger="httpTrigger",outcome="success"} 3"#))
                #expect(text.contains(#"fnhost_function_invocations_total{function="Fail",trigger="httpTrigger",outcome="server_error"} 1"#))
                #expect(text.contains(#"fnhost_function_duration_seconds_count{function="Echo",trigger="httpTrigger"} 3"#))
                #expect(text.contains(#"fnhost_function_in_flight{function="Echo"} 0"#))
                #expect(text.contains(#"fnhost_http_unrouted_total{status="404"} 1"#))
            }
        }
    }

    @Test func metricsNeedTheTokenOutsideDevelopment() async throws {
        let environment = ["ENVIRONMENT": "production", "METRICS_TOKEN": "s3cret-metrics-token"]
        try await withHost(environment: environment) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
                #expect(errorObject(response.body)["code"] == "UNAUTHENTICATED")
            }
            try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer wrong"]) { response in
                #expect(response.status == .unauthorized)
                #expect(!String(buffer: response.body).contains("s3cret"))
            }
            try await client.execute(
                uri: "/metrics", method: .get, headers: [.authorization: "Bearer s3cret-metrics-token"]
            ) { response in
                #expect(response.status == .ok)
                #expect(!String(buffer: response.body).contains("s3cret"))
            }
        }
        try await withHost(environment: ["ENVIRONMENT": "staging"]) { client in
            try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer "]) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test func adminListsFunctionsAndHostStatus() async throws {
        try await withHost { client in
            try await client.execute(uri: "/admin/functions", method: .get) { response in
                #expect(response.status == .ok)
                let list = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [[String: Any]]
                let names = list?.compactMap { $0["name"] as? String }
                #expect(names == ["Echo", "Fail", "Reject", "Stream", "Tick"])
                let tick = list?.first { $0["name"] as? String == "Tick" }
                #expect(tick?["trigger"] as? String == "timerTrigger")
                #expect((tick?["next"] as? String)?.hasSuffix("-01-01T00:00:00.000000Z") == true)
                let echo = list?.first { $0["name"] as? String == "Echo" }
                #expect(echo?["route"] as? String == "api/echo/{id}")
                #expect(echo?["methods"] as? [String] == ["GET", "POST"])
            }
            try await client.execute(uri: "/admin/host/status", method: .get) { response in
                let status = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                #expect(status?["state"] as? String == "Running")
                #expect(status?["functions"] as? Int == 5)
            }
            try await client.execute(uri: "/admin/functions/Nope", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/admin/functions/Echo", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/admin/functions/Tick", method: .post, body: ByteBuffer(string: "[1]")) { response in
                #expect(response.status == .badRequest)
            }
        }
    }
}

/// Requests the HTTP parser refuses, sent over a raw socket (python3): answered in the contract's
/// shape with `X-Request-Id` and `Connection: close`, then the connection closes.
@Suite struct TransportErrorTests {
    /// Sends `raw` (Python bytes literal syntax) and returns the whole answer until the server closes.
    static func exchange(port: Int, _ raw: String) async throws -> String {
        // Off the cooperative pool: waiting on a process there stalls every other test (2 threads).
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try exchangeBlocking(port: port, raw) }) }
        }
    }

    static func exchangeBlocking(port: Int, _ raw: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            """
            import socket,sys
            s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=30)  # generous: a loaded CI machine
            s.sendall(eval(sys.argv[2]))
            out=b''
            while True:
                try:
                    chunk=s.recv(65536)
                except socket.timeout:
                    out+=b'<timeout>'; break
                if not chunk: break
                out+=chunk
            sys.stdout.write(out.decode('latin-1'))
            """,
            String(port), raw,
        ]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { usleep(10_000) }
        return String(decoding: data, as: UTF8.self)
    }

    @Test func malformedRequestsGetTheContractsShape() async throws {
        try await withHost { client in
            let port = try #require(client.port)
            let cases: [(String, String, String)] = [
                ("431", "HEADERS_TOO_LARGE", #"b'GET /api/echo/1 HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a'*100000 + b'\r\n\r\n'"#),
                ("400", "VALIDATION_FAILED", #"b'POST /api/echo/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc'"#),
                ("400", "VALIDATION_FAILED", #"b'POST /api/echo/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'"#),
                ("400", "VALIDATION_FAILED", #"b'G@T /api/echo/1 HTTP/1.1\r\nHost: x\r\n\r\n'"#),
                ("414", "URI_TOO_LONG", #"b'GET /api/echo/' + b'a'*20000 + b' HTTP/1.1\r\nHost: x\r\n\r\n'"#),
            ]
            for (status, code, raw) in cases {
                let answer = try await Self.exchange(port: port, raw)
                #expect(answer.hasPrefix("HTTP/1.1 \(status)"), "\(code): \(answer.prefix(80))")
                #expect(answer.contains(#""code":"\#(code)""#), "\(answer.prefix(300))")
                #expect(answer.lowercased().contains("x-request-id: "))
                #expect(answer.lowercased().contains("connection: close"))
                #expect(!answer.contains("<timeout>"), "the server closed the connection")
                #expect(answer.lowercased().contains("content-length: "), "a framed body")
            }
            // CONNECT: 405 and closed. (SwiftNIO's encoder frames every answer to CONNECT without a body.)
            let connect = try await Self.exchange(port: port, #"b'CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n'"#)
            #expect(connect.hasPrefix("HTTP/1.1 405") && connect.lowercased().contains("connection: close") && !connect.contains("<timeout>"))
            #expect(connect.lowercased().contains("x-request-id: "))
            // HTTP/1.0 without keep-alive: answered, marked and closed.
            let old = try await Self.exchange(port: port, #"b'GET /api/echo/7 HTTP/1.0\r\n\r\n'"#)
            #expect(old.contains(" 200 ") && old.lowercased().contains("connection: close") && !old.contains("<timeout>"), "\(old.prefix(200))")
            // With keep-alive the connection stays for a second request.
            let kept = try await Self.exchange(
                port: port, #"b'GET /api/echo/7 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /api/echo/8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'"#)
            #expect(kept.components(separatedBy: "HTTP/1.1 200").count == 3, "\(kept.prefix(300))")
        }
    }
}

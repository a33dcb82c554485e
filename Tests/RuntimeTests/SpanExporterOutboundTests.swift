import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import TestSupport
import Testing

@testable import FunctionRuntime

/// Every request a stand-in server received: method, path, the headers that matter, the body.
actor ReceivedRequests {
    struct Entry: Sendable {
        var method: String
        var path: String
        var contentType: String?
        var apiKey: String?
        var traceparent: String?
        var body: [UInt8]
    }

    private(set) var entries: [Entry] = []

    func add(_ entry: Entry) { entries.append(entry) }
}

/// A loopback HTTP server that records every request, whatever its path or method, and answers each
/// with `answer` (a collector; or the target a collector redirects to).
private struct RecordingServer: RouterMiddleware {
    typealias Context = BasicRequestContext
    let received: ReceivedRequests
    let answer: @Sendable () -> Response

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let body = try await request.body.collect(upTo: 1 << 22)
        await received.add(
            .init(
                method: request.method.rawValue, path: request.uri.path, contentType: request.headers[.contentType],
                apiKey: request.headers[HTTPField.Name("api-key")!], traceparent: request.headers[HTTPField.Name("traceparent")!],
                body: Array(buffer: body)))
        return answer()
    }

    static func application(_ received: ReceivedRequests, answer: @escaping @Sendable () -> Response) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: RecordingServer(received: received, answer: answer))
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }
}

private func span(named name: String) -> FinishedSpan {
    FinishedSpan(
        context: TraceContext.start(from: nil), name: name, kind: .server, startNanos: 1, endNanos: 2,
        attributes: [("fnhost.tenant_id", .string("t-secret-tenant"))], failed: false)
}

private let apiKey = "otlp-api-key-value-7f3a"

private func exporter(_ settings: [String: String], logger: Logger) throws -> SpanExporter {
    try #require(try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_HEADERS": "api-key=\(apiKey)"], settings), logger: logger))
}

/// SPEC §14: the span exporter is an outbound call like the module's others — no redirect followed,
/// plain `http` only to loopback, certificates verified — because it carries `OTEL_EXPORTER_OTLP_HEADERS`
/// (an API key) and spans that name tenants.
@Suite(.serialized) struct SpanExporterOutboundTests {
    /// A collector answering 307 to another server: that server never sees a request, the API key or a
    /// span; the export counts as failed in the log, which names neither the key nor the redirect target.
    @Test func aRedirectIsNeverFollowed() async throws {
        let elsewhere = ReceivedRequests()
        try await RecordingServer.application(elsewhere) { Response(status: .ok) }.test(.live) { target in
            let location = "http://127.0.0.1:\(try #require(target.port))/v1/traces"
            let collector = ReceivedRequests()
            let redirecting = RecordingServer.application(collector) {
                Response(status: .temporaryRedirect, headers: [.location: location])
            }
            try await redirecting.test(.live) { otlp in
                let logs = CapturedLogs()
                let exporter = try exporter(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(try #require(otlp.port))"], logger: logs.logger())
                exporter.record(span(named: "Redirected"))
                #expect(await exporter.flush() == 0, "a 3xx is a failed export")
                #expect(await collector.entries.count == 1)
                #expect(await elsewhere.entries.isEmpty, "the redirect target never receives a request")
                let warning = try #require(logs.lines.first { ($0["msg"] as? String)?.hasPrefix("span export refused") == true })
                #expect(warning["status"] as? Int == 307 && warning["spans"] as? Int == 1, "\(warning)")
                #expect(warning["msg"] as? String == "span export refused: redirects are not followed")
                #expect(!logs.text.contains(apiKey) && !logs.text.contains(location))
            }
        }
        #expect(await elsewhere.entries.allSatisfy { $0.apiKey == nil })
    }

    /// The normal path still delivers: one protobuf POST to /v1/traces with the configured header,
    /// no `traceparent` of its own (the export is not traced).
    @Test func spansStillReachALoopbackCollector() async throws {
        let collector = ReceivedRequests()
        try await RecordingServer.application(collector) { Response(status: .ok) }.test(.live) { otlp in
            let logs = CapturedLogs()
            let port = try #require(otlp.port)
            let exporter = try exporter(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:\(port)/"], logger: logs.logger())
            exporter.record(span(named: "Delivered"))
            exporter.record(span(named: "AlsoDelivered"))
            let sent = await TraceContext.$current.withValue(TraceContext.start(from: nil)) {
                await SpanExporter.$current.withValue(exporter) { await exporter.flush() }
            }
            #expect(sent == 2)
            let entries = await collector.entries
            try #require(entries.count == 1)
            #expect(entries[0].method == "POST" && entries[0].path == "/v1/traces")
            #expect(entries[0].contentType == "application/x-protobuf" && entries[0].apiKey == apiKey)
            #expect(entries[0].traceparent == nil)
            #expect(entries[0].body.starts(with: [0x0A]), "field 1 (resource_spans), length-delimited")
            let body = entries[0].body
            for name in ["Delivered", "AlsoDelivered"] {
                #expect(body.indices.contains { body[$0...].starts(with: Array(name.utf8)) }, "\(name) in the body")
            }
            #expect(await exporter.flush() == 0, "the queue was emptied")
            #expect(!logs.text.contains("span export"), "nothing failed")
        }
    }

    /// `http` to anything but loopback stops start-up with an error naming the setting the endpoint came
    /// from, echoing neither the header values nor the URL.
    @Test func plainHTTPOnlyToLoopback() throws {
        let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
        let refused: [(String, String)] = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:pw-in-url@10.0.0.4:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1.nip.example:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.evil.example"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://128.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.256:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.a.b.c:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost.example:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector.example:4318/v1/traces"),
        ]
        for (name, url) in refused {
            let error = #expect(throws: SpanExporter.ConfigurationError.self, "\(url)") {
                try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_HEADERS": "api-key=\(apiKey)", name: url]), logger: logger)
            }
            let message = error?.description ?? ""
            #expect(message.hasPrefix("\(name): plain http is allowed only to a loopback address"), "\(message)")
            #expect(!message.contains(apiKey) && !message.contains("pw-in-url") && !message.contains(url), "\(message)")
        }
        let invalid = #expect(throws: SpanExporter.ConfigurationError.self) {
            try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://c/v1/traces"]), logger: logger)
        }
        #expect(invalid?.description == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be an http(s) URL")
        let allowed = [
            "http://127.0.0.1:4318", "http://127.9.8.7:4318", "http://localhost:4318", "http://LOCALHOST:4318", "http://[::1]:4318",
            "https://collector.example:4318", "https://10.0.0.4",
        ]
        for url in allowed {
            #expect(try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_ENDPOINT": url]), logger: logger) != nil, "\(url)")
        }
    }

    /// `https` verifies the collector's certificate against the system's trust store, as every other
    /// outbound call does: a certificate from a CA the system does not trust fails the export.
    @Test func httpsVerifiesTheCollectorsCertificate() async throws {
        let port = try FreePort.pick()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = [
            "openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-cert", try TestServices.serverCertificate(), "-key",
            try TestServices.serverKey(), "-www", "-quiet",
        ]
        let input = Pipe()
        server.standardInput = input
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL) }
        #expect(await eventually { !FreePort.refuses(port) }, "openssl s_server listens")
        let logs = CapturedLogs()
        let exporter = try exporter(["OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:\(port)"], logger: logs.logger())
        exporter.record(span(named: "Untrusted"))
        #expect(await exporter.flush() == 0)
        let warning = try #require(logs.lines.first { $0["msg"] as? String == "span export failed" })
        #expect((warning["reason"] as? String)?.hasPrefix("unreachable") == true, "\(warning)")
        #expect(!logs.text.contains(apiKey))
    }
}

import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import Functions

struct TraceparentTests {
    @Test func parsingFollowsW3CTraceContext() throws {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let parsed = try #require(TraceContext.parse(valid))
        #expect(Hex.encode(parsed.traceID) == "4bf92f3577b34da6a3ce929d0e0e4736" && Hex.encode(parsed.spanID) == "00f067aa0ba902b7" && parsed.sampled)
        #expect(TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled == false)
        #expect(TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future") != nil, "later versions: first fields")
        for bad in [
            "", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            #expect(TraceContext.parse(bad) == nil, "\(bad)")
        }
        let continued = TraceContext.start(from: valid)
        #expect(Hex.encode(continued.traceID) == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(continued.parentSpanID.map(Hex.encode) == "00f067aa0ba902b7" && continued.spanID != parsed.spanID)
        let fresh = TraceContext.start(from: "garbage")
        #expect(fresh.parentSpanID == nil && TraceContext.parse(fresh.traceparent) != nil)
        let child = continued.child()
        #expect(child.traceID == continued.traceID && child.parentSpanID == continued.spanID && child.spanID != continued.spanID)
    }

    @Test func everyLogLineOfAnInvocationGetsItsIDs() throws {
        let trace = TraceContext.start(from: nil)
        let inside = TraceContext.$current.withValue(trace) { TraceContext.metadataProvider.get() }
        #expect(inside["trace_id"] == .string(trace.traceIDText) && inside["span_id"] == .string(trace.spanIDText))
        #expect(TraceContext.metadataProvider.get().isEmpty, "nothing outside an invocation")
    }

    /// An incoming traceparent is continued into every host call; without one a new trace starts;
    /// the invocation's log lines carry trace_id and span_id.
    @Test func hostCallsCarryTheInvocationsTrace() async throws {
        let logs = CapturedLines()
        let key = try TestKey.make(kid: "k1")
        let host = StandInHost()
        await host.state.set(keys: [key])
        await LeadsHarness.grant(host, tenant: "t-trace", user: "u-1", ["LEADS_READ"])
        try await host.application().test(.live) { hostClient in
            let settings = IdentityHarness.hostSettings(hostClient.port ?? 0, extra: ["DATABASE_URL": try Backend.sqlite.databaseURL()])
            let root = try LeadsHarness.scriptRoot()
            let functionHost = try await FunctionHost.build(
                options: .init(scriptRoot: root.path, port: 0), module: FunctionHostModule(), environment: settings,
                logger: Logger(label: "t") { _ in logs.handler })
            try await functionHost.application().test(.live) { client in
                let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                let token = try LeadsHarness.token(key, tenant: "t-trace", user: "u-1")
                let answer = try await client.execute(
                    uri: "/api/leads", method: .get, headers: [.authorization: "Bearer \(token)", HTTPField.Name("traceparent")!: incoming]
                ) { $0.status }
                #expect(answer == .ok)
                let calls = await host.state.traceparents
                #expect(Set(calls.map(\.path)).isSuperset(of: ["jwks", "rbac"]), "\(calls)")
                for call in calls {
                    let parsed = try #require(TraceContext.parse(call.value), "\(call.path): '\(call.value)'")
                    #expect(Hex.encode(parsed.traceID) == "0af7651916cd43dd8448eb211c80319c", "\(call.path) continues the caller's trace")
                    #expect(Hex.encode(parsed.spanID) != "b7ad6b7169203331", "a span of its own")
                }
                let lines = logs.lines.filter { $0.contains("0af7651916cd43dd8448eb211c80319c") }
                #expect(lines.contains { $0.contains("Executed 'Functions.ListLeads'") && $0.contains("span_id") }, "\(logs.lines.suffix(5))")

                // No traceparent: a new trace, still propagated.
                await LeadsHarness.grant(host, tenant: "t-trace", user: "u-2", ["LEADS_READ"])
                let before = await host.state.traceparents.count
                let second = try LeadsHarness.token(key, tenant: "t-trace", user: "u-2")
                #expect(try await client.send(.get, "/api/leads", token: second).status == .ok)
                let fresh = await host.state.traceparents.dropFirst(before)
                #expect(!fresh.isEmpty)
                for call in fresh {
                    let parsed = try #require(TraceContext.parse(call.value))
                    #expect(Hex.encode(parsed.traceID) != "0af7651916cd43dd8448eb211c80319c")
                }
            }
        }
    }
}

/// A stand-in OTLP/HTTP endpoint: keeps every export request's body and headers.
actor OTLPCollector {
    var bodies: [[UInt8]] = []
    var apiKeys: [String] = []

    func received(_ body: [UInt8], apiKey: String?) {
        bodies.append(body)
        apiKeys.append(apiKey ?? "")
    }

    /// Every span of every request, decoded.
    var spans: [DecodedSpan] {
        bodies.flatMap { body in
            Protobuf.messages(body, 1).flatMap { Protobuf.messages($0, 2) }.flatMap { Protobuf.messages($0, 2) }.map(DecodedSpan.init)
        }
    }

    var resources: [[String: String]] {
        bodies.flatMap { body in Protobuf.messages(body, 1).flatMap { Protobuf.messages($0, 1) }.map { DecodedSpan.attributes($0) } }
    }

    nonisolated func application() -> some ApplicationProtocol {
        let router = Router()
        router.post("/v1/traces") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 22)
            await self.received(Array(buffer: body), apiKey: request.headers[HTTPField.Name("x-api-key")!])
            return Response(status: .ok)
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }
}

/// Just enough protobuf to read what the exporter wrote (independently of how it writes it).
enum Protobuf {
    enum Value {
        case varint(UInt64)
        case bytes([UInt8])
        case fixed64(UInt64)
    }

    static func fields(_ bytes: [UInt8]) -> [(Int, Value)] {
        var out: [(Int, Value)] = []
        var index = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while index < bytes.count, shift < 64 {
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while index < bytes.count, let key = varint() {
            let number = Int(key >> 3)
            switch key & 7 {
            case 0: if let value = varint() { out.append((number, .varint(value))) } else { return out }
            case 1:
                guard index + 8 <= bytes.count else { return out }
                var value: UInt64 = 0
                for offset in 0..<8 { value |= UInt64(bytes[index + offset]) << (8 * UInt64(offset)) }
                index += 8
                out.append((number, .fixed64(value)))
            case 2:
                guard let length = varint(), index + Int(length) <= bytes.count else { return out }
                out.append((number, .bytes(Array(bytes[index..<(index + Int(length))]))))
                index += Int(length)
            case 5: index += 4
            default: return out
            }
        }
        return out
    }

    static func messages(_ bytes: [UInt8], _ number: Int) -> [[UInt8]] {
        fields(bytes).compactMap { if $0.0 == number, case .bytes(let value) = $0.1 { value } else { nil } }
    }
}

struct DecodedSpan {
    var traceID = "", spanID = "", parentSpanID = "", name = ""
    var kind: UInt64 = 0
    var start: UInt64 = 0, end: UInt64 = 0
    var attributes: [String: String] = [:]
    var statusCode: UInt64 = 0

    init(_ bytes: [UInt8]) {
        for (number, value) in Protobuf.fields(bytes) {
            switch (number, value) {
            case (1, .bytes(let id)): traceID = Hex.encode(id)
            case (2, .bytes(let id)): spanID = Hex.encode(id)
            case (4, .bytes(let id)): parentSpanID = Hex.encode(id)
            case (5, .bytes(let text)): name = String(decoding: text, as: UTF8.self)
            case (6, .varint(let value)): kind = value
            case (7, .fixed64(let value)): start = value
            case (8, .fixed64(let value)): end = value
            case (15, .bytes(let status)):
                for (field, code) in Protobuf.fields(status) { if field == 3, case .varint(let value) = code { statusCode = value } }
            default: break
            }
        }
        attributes = Self.attributes(bytes, field: 9)
    }

    static func attributes(_ bytes: [UInt8], field: Int = 1) -> [String: String] {
        var result: [String: String] = [:]
        for pair in Protobuf.messages(bytes, field) {
            let key = Protobuf.messages(pair, 1).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
            for (number, value) in Protobuf.fields(Protobuf.messages(pair, 2).first ?? []) {
                switch (number, value) {
                case (1, .bytes(let text)): result[key] = String(decoding: text, as: UTF8.self)
                case (3, .varint(let int)): result[key] = String(Int64(bitPattern: int))
                case (2, .varint(let flag)): result[key] = flag == 1 ? "true" : "false"
                default: break
                }
            }
        }
        return result
    }
}

@Suite(.serialized) struct SpanExportTests {
    /// With OTEL_EXPORTER_OTLP_ENDPOINT the invocation, its host calls, the database and the cache
    /// arrive as spans of one trace at {endpoint}/v1/traces, with the configured headers and service name.
    @Test func spansOfAnInvocationReachTheOTLPEndpoint() async throws {
        let collector = OTLPCollector()
        try await collector.application().test(.live) { otlp in
            let extra = [
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(otlp.port ?? 0)", "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_SERVICE_NAME": "fnhost-test", "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=otlp%20secret",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test", "REDIS_URL": try TestRedis.url(),
            ]
            try await LeadsHarness.run(.postgres, extra: extra) { host, key, client in
                await LeadsHarness.grant(host, tenant: "t-spans", user: "u-1", ["LEADS_READ"])
                let token = try LeadsHarness.token(key, tenant: "t-spans", user: "u-1")
                let incoming = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01"
                let status = try await client.execute(
                    uri: "/api/leads?limit=5", method: .get, headers: [.authorization: "Bearer \(token)", HTTPField.Name("traceparent")!: incoming]
                ) { $0.status }
                #expect(status == .ok)
                let trace = "5bf92f3577b34da6a3ce929d0e0e4736"
                var spans: [DecodedSpan] = []
                let deadline = ContinuousClock.now + .seconds(5)
                repeat {
                    try await Task.sleep(for: .milliseconds(100))
                    spans = await collector.spans.filter { $0.traceID == trace }
                } while !spans.contains(where: { $0.name == "ListLeads" }) && ContinuousClock.now < deadline
                let server = try #require(spans.first { $0.name == "ListLeads" }, "\(spans.map(\.name))")
                #expect(server.kind == 2 && server.parentSpanID == "10f067aa0ba902b7" && server.statusCode == 1)
                #expect(server.attributes["fnhost.tenant_id"] == "t-spans" && server.attributes["http.response.status_code"] == "200")
                #expect(server.attributes["http.route"] == "api/leads" && server.end >= server.start)
                #expect(!server.attributes.values.contains { $0.contains(token) }, "never the token")
                let children = spans.filter { $0.parentSpanID == server.spanID }
                #expect(children.contains { $0.name.hasPrefix("HTTP GET") && $0.kind == 3 }, "host calls: \(children.map(\.name))")
                #expect(children.contains { $0.name.hasPrefix("postgres") }, "the database: \(children.map(\.name))")
                #expect(children.contains { $0.name.hasPrefix("redis") }, "the cache: \(children.map(\.name))")
                // The host saw the same span ids the exporter reported for its calls.
                let hostSaw = await host.state.traceparents.compactMap { TraceContext.parse($0.value) }.filter { Hex.encode($0.traceID) == trace }
                #expect(!hostSaw.isEmpty && hostSaw.allSatisfy { seen in children.contains { $0.spanID == Hex.encode(seen.spanID) } })
                #expect(await collector.apiKeys.allSatisfy { $0 == "otlp secret" })
                #expect(await collector.resources.contains { $0["service.name"] == "fnhost-test" && $0["deployment.environment"] == "test" })
            }
        }
    }

    @Test func nothingIsExportedWhenUnsetAndBadSettingsStopStartUp() throws {
        let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
        #expect(try SpanExporter.make(settings: Settings.layered([:]), logger: logger) == nil)
        #expect(try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_SDK_DISABLED": "true"]), logger: logger) == nil)
        #expect(try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_TRACES_EXPORTER": "none"]), logger: logger) == nil)
        let exporter = try #require(try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_ENDPOINT": "https://x:4318/"]), logger: logger))
        #expect(exporter.endpoint == "https://x:4318/v1/traces")
        #expect(try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/v9"]), logger: logger)?.endpoint == "https://c/v9")
        #expect(throws: SpanExporter.ConfigurationError.self) {
            try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"]), logger: logger)
        }
        #expect(throws: SpanExporter.ConfigurationError.self) {
            try SpanExporter.make(settings: Settings.layered(["OTEL_EXPORTER_OTLP_ENDPOINT": "https://x:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"]), logger: logger)
        }
        #expect(Tracing.start("x") == nil, "no exporter, no span")
    }
}

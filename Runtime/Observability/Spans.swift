import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// A span attribute value (the OTLP `AnyValue` kinds the host uses).
public enum SpanValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case bool(Bool)
}

public enum SpanKind: Int, Sendable {
    case `internal` = 1, server = 2, client = 3
}

/// A span that ended, ready for export.
public struct FinishedSpan: Sendable {
    public var context: TraceContext
    public var name: String
    public var kind: SpanKind
    public var startNanos: UInt64
    public var endNanos: UInt64
    public var attributes: [(String, SpanValue)]
    public var failed: Bool
}

/// A span in progress: started by `Tracing.start`, recorded by `end` (only while exporting).
public struct ActiveSpan: Sendable {
    public let context: TraceContext
    let name: String
    let kind: SpanKind
    let startNanos: UInt64
    let exporter: SpanExporter
    var attributes: [(String, SpanValue)]

    public mutating func set(_ key: String, _ value: SpanValue) {
        attributes.append((key, value))
    }

    public func end(failed: Bool = false) {
        exporter.record(
            FinishedSpan(
                context: context, name: name, kind: kind, startNanos: startNanos, endNanos: Tracing.nowNanos(), attributes: attributes,
                failed: failed))
    }
}

/// Attributes the module adds to the invocation's span while it runs (the tenant, once known).
public final class InvocationAttributes: Sendable {
    private let values = Mutex<[(String, SpanValue)]>([])

    public func set(_ key: String, _ value: SpanValue) {
        values.withLock { $0.append((key, value)) }
    }

    var all: [(String, SpanValue)] { values.withLock { $0 } }

    @TaskLocal public static var current: InvocationAttributes?
}

/// Spans (docs/observability.md): one per invocation (server), one per host, database and cache call (client),
/// exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Unset, `SpanExporter.current` is nil and
/// every helper here is a task-local read and a branch.
public enum Tracing {
    /// A child span of the current invocation, or nil when nothing is exported.
    public static func start(_ name: String, kind: SpanKind = .client, attributes: [(String, SpanValue)] = []) -> ActiveSpan? {
        guard let exporter = SpanExporter.current, let parent = TraceContext.current else { return nil }
        return ActiveSpan(context: parent.child(), name: name, kind: kind, startNanos: nowNanos(), exporter: exporter, attributes: attributes)
    }

    /// Runs `body` as a child span (a database or cache call).
    public static func span<T>(
        _ name: String, attributes: [(String, SpanValue)] = [], _ body: () async throws -> T
    ) async rethrows -> T {
        guard let span = start(name, attributes: attributes) else { return try await body() }
        do {
            let value = try await TraceContext.$current.withValue(span.context) { try await body() }
            span.end()
            return value
        } catch {
            span.end(failed: true)
            throw error
        }
    }

    static func nowNanos() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}

/// OTLP/HTTP protobuf export of finished spans to `{OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is), with `OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none` turn it off. Batched (at most 2048 waiting, oldest dropped first),
/// sent every `OTEL_BSP_SCHEDULE_DELAY` ms (default 1000) and at shutdown; a failed export is
/// dropped and counted in the log, never retried into memory. Sent through `OutboundHTTP` like every
/// other outbound call: no redirect is followed (a 3xx is a failed export: the request carries
/// `OTEL_EXPORTER_OTLP_HEADERS`, often an API key), plain `http` only to loopback, certificates verified.
public final class SpanExporter: Service, Sendable {
    @TaskLocal public static var current: SpanExporter?

    public let endpoint: String
    let headers: [(String, String)]
    let resource: [(String, SpanValue)]
    let interval: Duration
    let http: OutboundHTTP
    private let queue = Mutex<[FinishedSpan]>([])
    private let logger: Logger
    static let capacity = 2048

    init(
        endpoint: String, headers: [(String, String)], resource: [(String, SpanValue)], interval: Duration, logger: Logger,
        http: OutboundHTTP = OutboundHTTP()
    ) {
        self.endpoint = endpoint
        self.headers = headers
        self.resource = resource
        self.interval = interval
        self.http = http
        self.logger = logger
    }

    public struct ConfigurationError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The exporter the settings ask for, or nil (nothing exported).
    public static func make(settings: Settings, logger: Logger) throws(ConfigurationError) -> SpanExporter? {
        if settings.nonEmpty(HostSettings.sdkDisabled.name)?.lowercased() == "true" { return nil }
        if let exporter = settings.nonEmpty(HostSettings.tracesExporter.name)?.lowercased(), exporter == "none" { return nil }
        let endpoint: String
        let setting: String
        if let traces = settings.nonEmpty(HostSettings.otlpTracesEndpoint.name) {
            (endpoint, setting) = (traces, HostSettings.otlpTracesEndpoint.name)
        } else if let base = settings.nonEmpty(HostSettings.otlpEndpoint.name) {
            (endpoint, setting) = ((base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces", HostSettings.otlpEndpoint.name)
        } else {
            return nil
        }
        // Neither message echoes the URL: it may carry credentials (user info, a query key).
        guard let url = URL(string: endpoint), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ConfigurationError(description: "\(setting) must be an http(s) URL")
        }
        guard OutboundHTTP.isAllowedTarget(url) else {
            throw ConfigurationError(
                description: "\(setting): plain http is allowed only to a loopback address (127.0.0.0/8, ::1, localhost); "
                    + "use https for any other collector")
        }
        let protocolName = settings.nonEmpty(HostSettings.otlpTracesProtocol.name) ?? settings.nonEmpty(HostSettings.otlpProtocol.name) ?? "http/protobuf"
        guard protocolName == "http/protobuf" else {
            throw ConfigurationError(description: "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported, not \(protocolName)")
        }
        var resource: [(String, SpanValue)] = []
        for (key, value) in pairs(settings.nonEmpty(HostSettings.resourceAttributes.name)) { resource.append((key, .string(value))) }
        let service = settings.nonEmpty(HostSettings.serviceName.name) ?? resource.first { $0.0 == "service.name" }.flatMap {
            if case .string(let name) = $0.1 { name } else { nil }
        } ?? "fnhost"
        resource.removeAll { $0.0 == "service.name" }
        resource.insert(("service.name", .string(service)), at: 0)
        let delay = settings.nonEmpty(HostSettings.exportDelay.name).flatMap(Int.init).map { min(max($0, 10), 60_000) } ?? 1000
        return SpanExporter(
            endpoint: endpoint, headers: pairs(settings.nonEmpty(HostSettings.otlpHeaders.name)), resource: resource,
            interval: .milliseconds(delay), logger: logger)
    }

    /// `k=v,k2=v2`, percent-decoded, whitespace trimmed; malformed members skipped.
    static func pairs(_ text: String?) -> [(String, String)] {
        guard let text else { return [] }
        return text.split(separator: ",").compactMap { member in
            let parts = member.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            let key = parts[0].trimmingCharacters(in: .whitespaces).removingPercentEncoding ?? ""
            let value = parts[1].trimmingCharacters(in: .whitespaces).removingPercentEncoding ?? ""
            return key.isEmpty ? nil : (key, value)
        }
    }

    func record(_ span: FinishedSpan) {
        queue.withLock { queue in
            if queue.count >= Self.capacity { queue.removeFirst(queue.count - Self.capacity + 1) }
            queue.append(span)
        }
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            await flush()
        }
        await flush()
    }

    /// Sends what is queued (one request); returns the number of spans sent.
    @discardableResult
    func flush() async -> Int {
        let spans = queue.withLock { queue -> [FinishedSpan] in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        guard !spans.isEmpty else { return 0 }
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-protobuf")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: OTLPEncoding.request(spans: spans, resource: resource)))
        let http = http
        let reply: OutboundHTTP.Reply
        do {
            // The export is not part of any trace: no span of its own (it would refill the queue it
            // empties) and no `traceparent`.
            reply = try await SpanExporter.$current.withValue(nil) {
                try await TraceContext.$current.withValue(nil) { try await http.send(request, timeout: .seconds(10), maxBody: 1 << 16) }
            }
        } catch {
            let reason = (error as? OutboundHTTP.Failure)?.description ?? String(describing: type(of: error))
            logger.warning("span export failed", metadata: ["reason": .string(reason), "spans": .stringConvertible(spans.count)])
            return 0
        }
        guard (200..<300).contains(reply.status) else {
            // A redirect is refused like any other answer but 2xx; neither its target nor the headers are logged.
            let message: Logger.Message =
                (300..<400).contains(reply.status) ? "span export refused: redirects are not followed" : "span export refused"
            logger.warning(message, metadata: ["status": .stringConvertible(reply.status), "spans": .stringConvertible(spans.count)])
            return 0
        }
        return spans.count
    }
}

/// The OTLP protobuf messages the exporter sends, written by hand (field numbers of
/// `opentelemetry/proto/collector/trace/v1` and `trace/v1`): ExportTraceServiceRequest →
/// ResourceSpans(resource, scope_spans) → ScopeSpans(scope, spans) → Span.
enum OTLPEncoding {
    static func request(spans: [FinishedSpan], resource: [(String, SpanValue)]) -> [UInt8] {
        var resourceMessage: [UInt8] = []
        for (key, value) in resource { field(1, message: keyValue(key, value), into: &resourceMessage) }
        var scope: [UInt8] = []
        field(1, string: "fnhost", into: &scope)
        var scopeSpans: [UInt8] = []
        field(1, message: scope, into: &scopeSpans)
        for span in spans { field(2, message: encode(span), into: &scopeSpans) }
        var resourceSpans: [UInt8] = []
        field(1, message: resourceMessage, into: &resourceSpans)
        field(2, message: scopeSpans, into: &resourceSpans)
        var out: [UInt8] = []
        field(1, message: resourceSpans, into: &out)
        return out
    }

    static func encode(_ span: FinishedSpan) -> [UInt8] {
        var out: [UInt8] = []
        field(1, bytes: span.context.traceID, into: &out)
        field(2, bytes: span.context.spanID, into: &out)
        if let parent = span.context.parentSpanID { field(4, bytes: parent, into: &out) }
        field(5, string: span.name, into: &out)
        tag(6, wire: 0, into: &out)
        varint(UInt64(span.kind.rawValue), into: &out)
        tag(7, wire: 1, into: &out)
        fixed64(span.startNanos, into: &out)
        tag(8, wire: 1, into: &out)
        fixed64(max(span.endNanos, span.startNanos), into: &out)
        for (key, value) in span.attributes { field(9, message: keyValue(key, value), into: &out) }
        var status: [UInt8] = []
        tag(3, wire: 0, into: &status)
        varint(span.failed ? 2 : 1, into: &status)
        field(15, message: status, into: &out)
        return out
    }

    static func keyValue(_ key: String, _ value: SpanValue) -> [UInt8] {
        var any: [UInt8] = []
        switch value {
        case .string(let text): field(1, string: text, into: &any)
        case .bool(let flag):
            tag(2, wire: 0, into: &any)
            varint(flag ? 1 : 0, into: &any)
        case .int(let number):
            tag(3, wire: 0, into: &any)
            varint(UInt64(bitPattern: number), into: &any)
        }
        var out: [UInt8] = []
        field(1, string: key, into: &out)
        field(2, message: any, into: &out)
        return out
    }

    static func tag(_ number: Int, wire: UInt64, into out: inout [UInt8]) {
        varint(UInt64(number) << 3 | wire, into: &out)
    }

    static func varint(_ value: UInt64, into out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }

    static func fixed64(_ value: UInt64, into out: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8((value >> UInt64(shift)) & 0xFF)) }
    }

    static func field(_ number: Int, bytes: [UInt8], into out: inout [UInt8]) {
        tag(number, wire: 2, into: &out)
        varint(UInt64(bytes.count), into: &out)
        out.append(contentsOf: bytes)
    }

    static func field(_ number: Int, string: String, into out: inout [UInt8]) {
        field(number, bytes: Array(string.utf8), into: &out)
    }

    static func field(_ number: Int, message: [UInt8], into out: inout [UInt8]) {
        field(number, bytes: message, into: &out)
    }
}

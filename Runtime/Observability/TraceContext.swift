import Logging

/// W3C Trace Context (docs/observability.md): the `traceparent` of the invocation running in this task.
/// An incoming `traceparent` is continued (same trace id, a new span id whose parent is the
/// caller's), anything else — absent or malformed — starts a new trace. Every call the module makes
/// through `OutboundHTTP` carries a child `traceparent`, and every log line written in the task
/// carries `trace_id` and `span_id` (`metadataProvider`).
public struct TraceContext: Sendable, Equatable {
    public static let header = "traceparent"

    public let traceID: [UInt8]
    public let spanID: [UInt8]
    public let parentSpanID: [UInt8]?
    public let sampled: Bool

    @TaskLocal public static var current: TraceContext?

    init(traceID: [UInt8], spanID: [UInt8], parentSpanID: [UInt8]?, sampled: Bool) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.sampled = sampled
    }

    /// The invocation's context: continues `incoming` when it is a valid `traceparent`.
    public static func start(from incoming: String?) -> TraceContext {
        if let parent = incoming.flatMap(parse) {
            return TraceContext(traceID: parent.traceID, spanID: randomID(8), parentSpanID: parent.spanID, sampled: parent.sampled)
        }
        return TraceContext(traceID: randomID(16), spanID: randomID(8), parentSpanID: nil, sampled: true)
    }

    /// A span of this trace below this one (an outbound call).
    public func child() -> TraceContext {
        TraceContext(traceID: traceID, spanID: Self.randomID(8), parentSpanID: spanID, sampled: sampled)
    }

    /// `00-{trace id}-{span id}-{flags}`.
    public var traceparent: String {
        "00-\(Hex.encode(traceID))-\(Hex.encode(spanID))-\(sampled ? "01" : "00")"
    }

    public var traceIDText: String { Hex.encode(traceID) }
    public var spanIDText: String { Hex.encode(spanID) }

    /// A `traceparent` value: version 00 exactly (55 bytes), or a later version's first 55 bytes
    /// followed by `-` and more; lowercase hex; neither id all zeros; version `ff` refused.
    public static func parse(_ text: String) -> (traceID: [UInt8], spanID: [UInt8], sampled: Bool)? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 55, bytes[2] == 0x2D, bytes[35] == 0x2D, bytes[52] == 0x2D,
            let version = Hex.decode(String(decoding: bytes[0..<2], as: UTF8.self)), version[0] != 0xFF,
            let trace = Hex.decode(String(decoding: bytes[3..<35], as: UTF8.self)),
            let span = Hex.decode(String(decoding: bytes[36..<52], as: UTF8.self)),
            let flags = Hex.decode(String(decoding: bytes[53..<55], as: UTF8.self))
        else { return nil }
        if version[0] == 0 {
            guard bytes.count == 55 else { return nil }
        } else if bytes.count > 55, bytes[55] != 0x2D {
            return nil
        }
        guard trace.contains(where: { $0 != 0 }), span.contains(where: { $0 != 0 }) else { return nil }
        return (trace, span, flags[0] & 1 == 1)
    }

    /// `count` random bytes (8 or 16), never all zero.
    static func randomID(_ count: Int) -> [UInt8] {
        var id = RandomBytes.take(count)
        if !id.isEmpty, !id.contains(where: { $0 != 0 }) { id[count - 1] = 1 }
        return id
    }

    /// `trace_id` and `span_id` on every log line written while an invocation runs.
    public static let metadataProvider = Logger.MetadataProvider {
        guard let current = TraceContext.current else { return [:] }
        return ["trace_id": .string(current.traceIDText), "span_id": .string(current.spanIDText)]
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Synchronization

/// Where JSON log lines go: one `write(2)` per line, serialized so lines never interleave.
public final class LogSink: Sendable {
    private let fileDescriptor: Int32
    private let lock = Mutex(())

    public init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    public static let standardOutput = LogSink(fileDescriptor: 1)
    public static let standardError = LogSink(fileDescriptor: 2)

    func write(_ bytes: [UInt8]) {
        lock.withLock { _ in
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(fileDescriptor, buffer.baseAddress.unsafelyUnwrapped + offset, buffer.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }
}

/// A swift-log handler writing one JSON object per line:
/// `{"ts":"…Z","level":"info","msg":"…","request_id":"…","function":"…", …metadata}`.
///
/// Metadata keys become top-level fields (a key that collides with `ts`, `level`, `msg`
/// or `logger` is prefixed with `meta.`); integer, floating-point and boolean values stay
/// JSON numbers and booleans.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: LogSink
    private let redactor: SecretRedactor?

    public init(
        label: String, sink: LogSink = .standardOutput, level: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil, redactor: SecretRedactor? = nil
    ) {
        self.label = label
        self.sink = sink
        self.logLevel = level
        self.metadataProvider = metadataProvider
        self.redactor = redactor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let reserved: Set<String> = ["ts", "level", "msg", "logger"]

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }

        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.field("ts", Timestamp.now())
        writer.field("level", event.level.rawValue)
        writer.field("msg", event.message.description)
        writer.field("logger", label)
        for key in merged.keys.sorted() {
            let value = merged[key].unsafelyUnwrapped
            writer.key(Self.reserved.contains(key) ? "meta." + key : key)
            Self.write(value, to: &writer)
        }
        if let error = event.error {
            writer.field("error", String(describing: type(of: error)))
        }
        writer.endObject()
        writer.newline()
        // Masking the finished line covers the message, every metadata value and the error.
        if let redactor, !redactor.isEmpty {
            let line = String(decoding: writer.bytes, as: UTF8.self)
            sink.write(Array(redactor.redact(line).utf8))
        } else {
            sink.write(writer.bytes)
        }
    }

    private static func write(_ value: Logger.Metadata.Value, to writer: inout JSONWriter) {
        switch value {
        case .string(let text):
            writer.string(text)
        case .stringConvertible(let convertible):
            switch convertible {
            case let number as Int: writer.int(number)
            case let number as Int64: writer.int(number)
            case let number as Double where number.isFinite: writer.raw(String(number))
            case let flag as Bool: writer.bool(flag)
            default: writer.string(convertible.description)
            }
        case .array(let values):
            writer.beginArray()
            for element in values {
                writer.comma()
                write(element, to: &writer)
            }
            writer.endArray()
        case .dictionary(let dictionary):
            writer.beginObject()
            for key in dictionary.keys.sorted() {
                writer.key(key)
                write(dictionary[key].unsafelyUnwrapped, to: &writer)
            }
            writer.endObject()
        }
    }
}

/// RFC 3339 UTC timestamps with milliseconds, without Foundation's formatters.
enum Timestamp {
    static func now() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return format(seconds: Int64(spec.tv_sec), nanoseconds: Int(spec.tv_nsec), fractionDigits: 3)
    }

    static func format(seconds: Int64, nanoseconds: Int, fractionDigits: Int) -> String {
        let c = Civil(seconds: seconds)
        var text = ""
        text.reserveCapacity(32)
        func pad(_ value: Int, _ width: Int) {
            let digits = String(value)
            for _ in digits.count..<width { text.append("0") }
            text += digits
        }
        pad(c.year, 4); text.append("-"); pad(c.month, 2); text.append("-"); pad(c.day, 2)
        text.append("T"); pad(c.hour, 2); text.append(":"); pad(c.minute, 2); text.append(":"); pad(c.second, 2)
        if fractionDigits > 0 {
            var divisor = 1
            for _ in 0..<(9 - fractionDigits) { divisor *= 10 }
            text.append(".")
            pad(nanoseconds / divisor, fractionDigits)
        }
        text.append("Z")
        return text
    }
}

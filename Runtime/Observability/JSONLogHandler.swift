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
/// Metadata keys become top-level fields in key order (a key that collides with `ts`, `level`, `msg`
/// or `logger` is prefixed with `meta.`); integer, floating-point and boolean values stay
/// JSON numbers and booleans. The handler keeps its metadata as a small array sorted by key, not a
/// dictionary: a request sets four keys and logs a line or two, and merging and sorting a dictionary
/// per line showed in the listing's profile (docs/benchmarks.md, session 9).
public struct JSONLogHandler: LogHandler {
    private typealias Field = (key: String, value: Logger.Metadata.Value)

    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    private var fields: [Field] = []
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

    public var metadata: Logger.Metadata {
        get { Logger.Metadata(fields.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }) }
        set {
            fields = []
            for (key, value) in newValue { Self.set(key, value, in: &fields) }
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { Self.index(of: key, in: fields).found.map { fields[$0].value } }
        set {
            let (found, insertion) = Self.index(of: key, in: fields)
            switch (found, newValue) {
            case (let index?, let value?): fields[index].value = value
            case (let index?, nil): fields.remove(at: index)
            case (nil, let value?): fields.insert((key, value), at: insertion)
            case (nil, nil): break
            }
        }
    }

    /// Where `key` is in `fields` (sorted by key), or where it would go.
    private static func index(of key: String, in fields: [Field]) -> (found: Int?, insertion: Int) {
        var low = 0
        var high = fields.count
        while low < high {
            let middle = (low + high) / 2
            if fields[middle].key < key { low = middle + 1 } else { high = middle }
        }
        return (low < fields.count && fields[low].key == key ? low : nil, low)
    }

    private static func set(_ key: String, _ value: Logger.Metadata.Value, in fields: inout [Field]) {
        let (found, insertion) = index(of: key, in: fields)
        if let found { fields[found].value = value } else { fields.insert((key, value), at: insertion) }
    }

    /// The line's own fields, which metadata cannot overwrite.
    private static func isReserved(_ key: String) -> Bool {
        switch key {
        case "ts", "level", "msg", "logger": true
        default: false
        }
    }

    public func log(event: LogEvent) {
        // The handler's fields, then the provider's, then the event's: a later one wins a key.
        var merged = fields
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            for (key, value) in provided { Self.set(key, value, in: &merged) }
        }
        if let extra = event.metadata {
            for (key, value) in extra { Self.set(key, value, in: &merged) }
        }

        var writer = JSONWriter(capacity: 384)
        writer.beginObject()
        writer.key("ts")
        writer.unescapedString { Timestamp.appendNow(to: &$0) }
        writer.field("level", event.level.rawValue)
        writer.field("msg", event.message.description)
        writer.field("logger", label)
        for field in merged {
            writer.key(Self.isReserved(field.key) ? "meta." + field.key : field.key)
            Self.write(field.value, to: &writer)
        }
        if let error = event.error {
            writer.field("error", String(describing: type(of: error)))
        }
        writer.endObject()
        writer.newline()
        // Masking the finished line covers the message, every metadata value and the error.
        sink.write(redactor?.redact(bytes: writer.bytes) ?? writer.bytes)
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

/// RFC 3339 UTC timestamps (`YYYY-MM-DDTHH:MM:SS[.f…]Z`) built from bytes, without Foundation's
/// formatters or calendars: the log's `ts` (milliseconds) and the module's stored timestamps (microseconds).
public enum Timestamp {
    /// Now, with milliseconds.
    public static func now() -> String {
        var bytes: [UInt8] = []
        appendNow(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func appendNow(to bytes: inout [UInt8]) {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        append(seconds: Int64(spec.tv_sec), nanoseconds: Int(spec.tv_nsec), fractionDigits: 3, to: &bytes)
    }

    /// `seconds` since 1970 and `nanoseconds` (0..<1e9) with `fractionDigits` (0…9) digits of the fraction, truncated.
    public static func format(seconds: Int64, nanoseconds: Int, fractionDigits: Int) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        append(seconds: seconds, nanoseconds: nanoseconds, fractionDigits: fractionDigits, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func append(seconds: Int64, nanoseconds: Int, fractionDigits: Int, to bytes: inout [UInt8]) {
        let c = Civil(seconds: seconds)
        func pad(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var value = value
            if value < 0 || value >= divisor * 10 {
                // Outside the field (years before 0 or past 9999): every digit, never a truncated one.
                bytes.append(contentsOf: String(value).utf8)
                return
            }
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value / divisor))
                value %= divisor
                divisor /= 10
            }
        }
        pad(c.year, 4); bytes.append(UInt8(ascii: "-")); pad(c.month, 2); bytes.append(UInt8(ascii: "-")); pad(c.day, 2)
        bytes.append(UInt8(ascii: "T")); pad(c.hour, 2); bytes.append(UInt8(ascii: ":")); pad(c.minute, 2)
        bytes.append(UInt8(ascii: ":")); pad(c.second, 2)
        let digits = min(max(fractionDigits, 0), 9)
        if digits > 0 {
            var divisor = 1
            for _ in 0..<(9 - digits) { divisor *= 10 }
            bytes.append(UInt8(ascii: "."))
            pad(min(max(nanoseconds, 0), 999_999_999) / divisor, digits)
        }
        bytes.append(UInt8(ascii: "Z"))
    }
}

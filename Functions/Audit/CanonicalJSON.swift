import FunctionRuntime

/// A JSON value as the audit log hashes it: docs/audit.md allows strings, integers (|n| < 2^53),
/// booleans, null, arrays and objects. Objects keep their members as written (no Swift
/// `Dictionary`: it would merge keys that are canonically equivalent but not identical).
indirect enum AuditJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([AuditJSON])
    case object([(String, AuditJSON)])

    static let maxSafeInteger: Int64 = 9_007_199_254_740_991

    static func == (lhs: AuditJSON, rhs: AuditJSON) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.string(let a), .string(let b)): a.utf8.elementsEqual(b.utf8)
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)):
            a.count == b.count && zip(a, b).allSatisfy { $0.0.utf8.elementsEqual($1.0.utf8) && $0.1 == $1.1 }
        default: false
        }
    }

    /// Converts module-built details; a non-integer or unsafe number is refused, and U+0000 (which
    /// PostgreSQL cannot store) becomes U+FFFD before hashing, so what is stored is what was hashed.
    init(_ value: JSONValue) throws(AuditFormatError) {
        switch value {
        case .null: self = .null
        case .bool(let flag): self = .bool(flag)
        case .number(let number):
            guard number.rounded() == number, abs(number) <= Double(Self.maxSafeInteger) else {
                throw AuditFormatError("audit details hold only integers below 2^53")
            }
            self = .int(Int64(number))
        case .string(let text): self = .string(Self.storable(text))
        case .array(let values):
            var items: [AuditJSON] = []
            items.reserveCapacity(values.count)
            for item in values { items.append(try AuditJSON(item)) }
            self = .array(items)
        case .object(let members):
            var items: [(String, AuditJSON)] = []
            items.reserveCapacity(members.count)
            for (key, item) in members { items.append((Self.storable(key), try AuditJSON(item))) }
            self = .object(items)
        }
    }

    /// Text as PostgreSQL can store it (no NUL), identical elsewhere.
    static func storable(_ text: String) -> String {
        text.utf8.contains(0) ? String(text.unicodeScalars.map { $0 == "\0" ? "\u{FFFD}" : Character($0) }) : text
    }

    /// RFC 8785 (JCS): members sorted by their UTF-16 code units, no whitespace, strings escaped
    /// only where JSON requires (`"`, `\`, control characters; never `/` or non-ASCII).
    func writeCanonical(to writer: inout JSONWriter) {
        switch self {
        case .null: writer.null()
        case .bool(let flag): writer.bool(flag)
        case .int(let number): writer.int(number)
        case .string(let text): writer.string(text)
        case .array(let items):
            writer.beginArray()
            for item in items {
                writer.comma()
                item.writeCanonical(to: &writer)
            }
            writer.endArray()
        case .object(let members):
            writer.beginObject()
            for (key, value) in members.sorted(by: { $0.0.utf16.lexicographicallyPrecedes($1.0.utf16) }) {
                writer.key(key)
                value.writeCanonical(to: &writer)
            }
            writer.endObject()
        }
    }

    var canonicalText: String {
        var writer = JSONWriter()
        writeCanonical(to: &writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// For the API: the same value as a `JSONValue`.
    var jsonValue: JSONValue {
        switch self {
        case .null: .null
        case .bool(let flag): .bool(flag)
        case .int(let number): .number(Double(number))
        case .string(let text): .string(text)
        case .array(let items): .array(items.map(\.jsonValue))
        case .object(let members): .object(Dictionary(members.map { ($0.0, $0.1.jsonValue) }, uniquingKeysWith: { first, _ in first }))
        }
    }

    /// Parses JSON text as stored by the database (`jsonb` output or SQLite text). Anything outside
    /// docs/audit.md's value set (a fraction, an exponent, a number beyond 2^53) is a format error, which
    /// the verifier reports as a break.
    static func parse(_ text: String) throws(AuditFormatError) -> AuditJSON {
        var parser = Parser(bytes: Array(text.utf8))
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else { throw AuditFormatError("trailing characters after JSON") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func expect(_ literal: String) throws(AuditFormatError) {
            for byte in literal.utf8 {
                guard index < bytes.count, bytes[index] == byte else { throw AuditFormatError("invalid JSON literal") }
                index += 1
            }
        }

        mutating func value(depth: Int) throws(AuditFormatError) -> AuditJSON {
            guard depth < 64 else { throw AuditFormatError("JSON nested too deeply") }
            skipWhitespace()
            guard index < bytes.count else { throw AuditFormatError("unexpected end of JSON") }
            switch bytes[index] {
            case UInt8(ascii: "n"): try expect("null"); return .null
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["):
                index += 1
                var items: [AuditJSON] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(items)
                }
                while true {
                    items.append(try value(depth: depth + 1))
                    skipWhitespace()
                    guard index < bytes.count else { throw AuditFormatError("unexpected end of JSON") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    guard bytes[index] == UInt8(ascii: "]") else { throw AuditFormatError("expected ',' or ']'") }
                    index += 1
                    return .array(items)
                }
            case UInt8(ascii: "{"):
                index += 1
                var members: [(String, AuditJSON)] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .object(members)
                }
                while true {
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw AuditFormatError("expected a member name") }
                    let key = try string()
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw AuditFormatError("expected ':'") }
                    index += 1
                    members.append((key, try value(depth: depth + 1)))
                    skipWhitespace()
                    guard index < bytes.count else { throw AuditFormatError("unexpected end of JSON") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    guard bytes[index] == UInt8(ascii: "}") else { throw AuditFormatError("expected ',' or '}'") }
                    index += 1
                    return .object(members)
                }
            default: return .int(try integer())
            }
        }

        mutating func integer() throws(AuditFormatError) -> Int64 {
            let start = index
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
            let digitsStart = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
            guard index > digitsStart, index - digitsStart <= 16 else { throw AuditFormatError("invalid or unsafe number") }
            if index < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[index]) {
                throw AuditFormatError("audit details hold only integers")
            }
            guard let number = Int64(String(decoding: bytes[start..<index], as: UTF8.self)), abs(number) <= AuditJSON.maxSafeInteger
            else { throw AuditFormatError("invalid or unsafe number") }
            return number
        }

        mutating func hex4() throws(AuditFormatError) -> UInt32 {
            guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16)
            else { throw AuditFormatError("invalid \\u escape") }
            index += 4
            return value
        }

        mutating func string() throws(AuditFormatError) -> String {
            index += 1  // opening quote
            var scalars = String.UnicodeScalarView()
            var run = index
            func flush(_ end: Int) throws(AuditFormatError) {
                guard end > run else { return }
                guard let text = String(validating: bytes[run..<end], as: UTF8.self) else { throw AuditFormatError("invalid UTF-8") }
                scalars.append(contentsOf: text.unicodeScalars)
            }
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    try flush(index)
                    index += 1
                    return String(scalars)
                }
                if byte < 0x20 { throw AuditFormatError("control character in string") }
                if byte != UInt8(ascii: "\\") {
                    index += 1
                    continue
                }
                try flush(index)
                index += 1
                guard index < bytes.count else { break }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw AuditFormatError("lone surrogate in string")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw AuditFormatError("lone surrogate in string") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw AuditFormatError("lone surrogate in string") }
                    scalars.append(scalar)
                default: throw AuditFormatError("invalid escape in string")
                }
                run = index
            }
            throw AuditFormatError("unterminated string")
        }
    }
}

struct AuditFormatError: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

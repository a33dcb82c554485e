/// Why a JSON text was refused; `description` is safe to show a client (it names a position or a
/// field, never the input).
public struct JSONReadError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case syntax
        case tooDeep
        case duplicateKey
        case invalidUTF8
        /// A NUL character (U+0000) in a string; `field` is the member path, `""` at the top.
        case nul(field: String)
    }

    public let reason: Reason
    /// Byte offset where reading stopped.
    public let offset: Int

    public var description: String {
        switch reason {
        case .syntax: "malformed JSON at byte \(offset)"
        case .tooDeep: "JSON nested deeper than allowed at byte \(offset)"
        case .duplicateKey: "duplicate member name at byte \(offset)"
        case .invalidUTF8: "invalid UTF-8 at byte \(offset)"
        case .nul(let field): field.isEmpty ? "a string contains a NUL character" : "field '\(field)' must not contain a NUL character"
        }
    }
}

/// A single-pass JSON reader (RFC 8259) with linear cost in the input's size, whatever its shape:
/// each value's type is known from its first byte, the depth limit is checked on the way down,
/// strings are validated as UTF-8 once. Every JSON the process reads from outside goes through it
/// (token headers, request bodies, invocation payloads, host answers, manifests), so no input can
/// make parsing cost more than a constant per byte. Strings holding U+0000 are refused (docs/api.md).
public struct JSONReader {
    public static let defaultMaxDepth = 64

    private let bytes: [UInt8]
    private var index = 0
    private let maxDepth: Int
    private var path: [String] = []

    private init(_ bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    public static func parse(_ input: some Collection<UInt8>, maxDepth: Int = defaultMaxDepth) throws(JSONReadError) -> JSONValue {
        var reader = JSONReader(Array(input), maxDepth: maxDepth)
        reader.skipWhitespace()
        let value = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.index == reader.bytes.count else { throw reader.fail(.syntax) }
        return value
    }

    /// Parses and requires an object at the top.
    public static func object(_ input: some Collection<UInt8>, maxDepth: Int = defaultMaxDepth) throws(JSONReadError) -> [String: JSONValue] {
        guard case .object(let object) = try parse(input, maxDepth: maxDepth) else { throw JSONReadError(reason: .syntax, offset: 0) }
        return object
    }

    private func fail(_ reason: JSONReadError.Reason) -> JSONReadError { JSONReadError(reason: reason, offset: index) }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func value(depth: Int) throws(JSONReadError) -> JSONValue {
        guard index < bytes.count else { throw fail(.syntax) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw fail(.syntax)
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONReadError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw fail(.syntax) }
        let matches = word.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
        }
        guard matches else { throw fail(.syntax) }
        index += count
    }

    private mutating func object(depth: Int) throws(JSONReadError) -> JSONValue {
        guard depth <= maxDepth else { throw fail(.tooDeep) }
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail(.syntax) }
            let keyStart = index
            let key = try string()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail(.syntax) }
            index += 1
            skipWhitespace()
            path.append(key)
            let member = try value(depth: depth)
            path.removeLast()
            // Keys are Swift strings: canonically equivalent names count as one, and are refused as duplicates.
            guard members.updateValue(member, forKey: key) == nil else {
                index = keyStart
                throw fail(.duplicateKey)
            }
            skipWhitespace()
            guard index < bytes.count else { throw fail(.syntax) }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "}") else { throw fail(.syntax) }
            index += 1
            return .object(members)
        }
    }

    private mutating func array(depth: Int) throws(JSONReadError) -> JSONValue {
        guard depth <= maxDepth else { throw fail(.tooDeep) }
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try value(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw fail(.syntax) }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "]") else { throw fail(.syntax) }
            index += 1
            return .array(elements)
        }
    }

    /// RFC 8259 number grammar, then one conversion of the validated text.
    private mutating func number() throws(JSONReadError) -> Double {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw fail(.syntax) }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            guard isDigit(bytes[index]) else { throw fail(.syntax) }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw fail(.syntax) }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw fail(.syntax) }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        // Overflow reads as ±infinity; refuse it so no later conversion can trap.
        guard let value = Double(text), value.isFinite else { throw JSONReadError(reason: .syntax, offset: start) }
        return value
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// A string starting at the opening quote; escapes decoded, UTF-8 validated, NUL refused.
    private mutating func string() throws(JSONReadError) -> String {
        index += 1
        let start = index
        // Fast path: no escape before the closing quote.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = try validated(bytes[start..<index], at: start)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw fail(.syntax) }
            index += 1
        }
        var out = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let text = try validated(out[...], at: start)
                index += 1
                return text
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw fail(.syntax) }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw fail(.invalidUTF8)
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail(.invalidUTF8) }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail(.invalidUTF8)
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw fail(.invalidUTF8) }
                    out.append(contentsOf: UTF8.encode(unicode).map { Array($0) } ?? [])
                default:
                    throw fail(.syntax)
                }
            default:
                guard byte >= 0x20 else { throw fail(.syntax) }
                out.append(byte)
                index += 1
            }
        }
        throw fail(.syntax)
    }

    private mutating func hex4() throws(JSONReadError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail(.syntax) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw fail(.syntax)
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private func validated(_ raw: ArraySlice<UInt8>, at start: Int) throws(JSONReadError) -> String {
        guard let text = String(validating: raw, as: UTF8.self) else { throw JSONReadError(reason: .invalidUTF8, offset: start) }
        if raw.contains(0) { throw JSONReadError(reason: .nul(field: path.joined(separator: ".")), offset: start) }
        return text
    }
}


/// A Redis reply.
enum RedisValue: Sendable, Equatable {
    case string([UInt8])
    case integer(Int64)
    case array([RedisValue])
    case null
    case status(String)
    case error(String)

    var bytes: [UInt8]? {
        if case .string(let bytes) = self { return bytes }
        return nil
    }

    var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }
}

/// RESP2, the Redis wire protocol: commands as arrays of bulk strings, replies parsed
/// incrementally and bounded (no input from the server can make the parser allocate without
/// limit, recurse without limit or trap). Pure, so the fuzzer runs it alone.
enum RESP {
    struct Limits: Sendable {
        /// Largest bulk string accepted (the module stores a few KiB per key).
        var maxBulk = 64 * 1024 * 1024
        var maxElements = 1_000_000
        var maxDepth = 8
        /// Longest simple line (status, error, integer, length).
        var maxLine = 64 * 1024

        static let standard = Limits()
    }

    struct ProtocolError: Error, Equatable, CustomStringConvertible {
        let description: String
    }

    /// `*N\r\n` then `$len\r\nbytes\r\n` per argument.
    static func encode(_ arguments: [[UInt8]], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        out.append(contentsOf: String(arguments.count).utf8)
        out.append(contentsOf: [0x0D, 0x0A])
        for argument in arguments {
            out.append(UInt8(ascii: "$"))
            out.append(contentsOf: String(argument.count).utf8)
            out.append(contentsOf: [0x0D, 0x0A])
            out.append(contentsOf: argument)
            out.append(contentsOf: [0x0D, 0x0A])
        }
    }

    /// One reply from the start of `bytes`: the value and the bytes it took, or nil when the
    /// reply is not complete yet. Throws on anything that is not RESP2 within `limits`.
    static func parse(_ bytes: UnsafeRawBufferPointer, limits: Limits = .standard) throws(ProtocolError) -> (value: RedisValue, consumed: Int)? {
        var index = 0
        guard let value = try value(bytes, &index, depth: 0, limits: limits) else { return nil }
        return (value, index)
    }

    /// The content of the line at `index` (without CR LF), moving `index` past it; nil if incomplete.
    private static func line(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, limits: Limits) throws(ProtocolError) -> Range<Int>? {
        var cursor = index
        while cursor < bytes.count {
            if bytes[cursor] == 0x0D {
                guard cursor + 1 < bytes.count else { return nil }
                guard bytes[cursor + 1] == 0x0A else { throw ProtocolError(description: "CR without LF") }
                let range = index..<cursor
                index = cursor + 2
                return range
            }
            if bytes[cursor] == 0x0A { throw ProtocolError(description: "LF without CR") }
            cursor += 1
            if cursor - index > limits.maxLine { throw ProtocolError(description: "line longer than \(limits.maxLine) bytes") }
        }
        return nil
    }

    /// A signed decimal of at most 19 digits, nothing else.
    private static func integer(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) throws(ProtocolError) -> Int64 {
        var cursor = range.lowerBound
        var negative = false
        if cursor < range.upperBound, bytes[cursor] == UInt8(ascii: "-") {
            negative = true
            cursor += 1
        }
        let digits = range.upperBound - cursor
        guard (1...19).contains(digits) else { throw ProtocolError(description: "bad integer") }
        var value: Int64 = 0
        while cursor < range.upperBound {
            let byte = bytes[cursor]
            guard byte >= 0x30, byte <= 0x39 else { throw ProtocolError(description: "bad integer") }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (added, overflow2) = shifted.addingReportingOverflow(Int64(byte - 0x30))
            guard !overflow1, !overflow2 else { throw ProtocolError(description: "integer out of range") }
            value = added
            cursor += 1
        }
        return negative ? -value : value
    }

    private static func text(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    private static func value(
        _ bytes: UnsafeRawBufferPointer, _ index: inout Int, depth: Int, limits: Limits
    ) throws(ProtocolError) -> RedisValue? {
        guard index < bytes.count else { return nil }
        let type = bytes[index]
        var cursor = index + 1
        guard let content = try line(bytes, &cursor, limits: limits) else { return nil }
        let result: RedisValue
        switch type {
        case UInt8(ascii: "+"):
            result = .status(text(bytes, content))
        case UInt8(ascii: "-"):
            result = .error(text(bytes, content))
        case UInt8(ascii: ":"):
            result = .integer(try integer(bytes, content))
        case UInt8(ascii: "$"):
            let length = try integer(bytes, content)
            if length == -1 {
                result = .null
                break
            }
            guard length >= 0, length <= limits.maxBulk else { throw ProtocolError(description: "bulk length \(length) out of range") }
            let count = Int(length)
            guard bytes.count - cursor >= count + 2 else { return nil }
            guard bytes[cursor + count] == 0x0D, bytes[cursor + count + 1] == 0x0A else {
                throw ProtocolError(description: "bulk string not followed by CR LF")
            }
            result = .string(Array(UnsafeRawBufferPointer(rebasing: bytes[cursor..<(cursor + count)])))
            cursor += count + 2
        case UInt8(ascii: "*"):
            let count = try integer(bytes, content)
            if count == -1 {
                result = .null
                break
            }
            guard count >= 0, count <= limits.maxElements else { throw ProtocolError(description: "array length \(count) out of range") }
            guard depth < limits.maxDepth else { throw ProtocolError(description: "arrays nested deeper than \(limits.maxDepth)") }
            var elements: [RedisValue] = []
            // Reserve only what the bytes present could hold (every element takes at least 3 bytes).
            elements.reserveCapacity(min(Int(count), (bytes.count - cursor) / 3))
            for _ in 0..<count {
                guard let element = try value(bytes, &cursor, depth: depth + 1, limits: limits) else { return nil }
                elements.append(element)
            }
            result = .array(elements)
        default:
            throw ProtocolError(description: "unknown reply type \(type)")
        }
        index = cursor
        return result
    }
}

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
/// limit, recurse, trap or work more than once on the same byte). Pure, so the fuzzer runs it alone.
enum RESP {
    /// What one reply may hold (docs/redis.md). The module's largest replies are a JWKS or a page of
    /// keys, far below; a reply over a bound is a protocol error, and the connection is dropped.
    struct Limits: Sendable {
        /// Every byte of one reply, headers and CR LFs included.
        var maxReply = 64 * 1024 * 1024
        /// Elements of one reply, over all its arrays.
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
        var parser = Parser(limits: limits)
        let step = try parser.consume(bytes)
        guard let value = step.value else { return nil }
        return (value, step.consumed)
    }

    /// Parses replies that arrive in pieces, keeping its place between them: the bytes it has taken
    /// are dropped by the caller and never looked at again, so a reply of n bytes costs O(n) however
    /// the network splits it (re-parsing from the start on every read made a 4.7 MB reply miss the
    /// 500 ms deadline). Between pieces it holds the arrays still being filled, the length of a bulk
    /// string whose header is taken but whose bytes have not all arrived (taken whole, in one copy,
    /// once they have), and how far into an unfinished line it has looked.
    struct Parser {
        private struct OpenArray {
            var remaining: Int
            var elements: [RedisValue] = []

            init(count: Int, reserving capacity: Int) {
                remaining = count
                elements.reserveCapacity(capacity)
            }
        }

        /// What one call took: the reply if it completed, and the bytes the caller may drop. (A struct, not
        /// a tuple: Swift 6.3's SIL generation crashes on a tuple holding an optional returned through
        /// a typed-throws closure such as `withUnsafeReadableBytes`'s.)
        struct Step {
            var value: RedisValue?
            var consumed: Int
        }

        let limits: Limits
        /// The array being filled, and the arrays around it (outermost first); kept apart so that a
        /// reply of one array costs no more than the recursive parser it replaced.
        private var innermost: OpenArray?
        private var outer: [OpenArray] = []
        private var pendingBulk: Int?
        private var scanned = 0
        private var replyBytes = 0
        private var replyElements = 0

        init(limits: Limits = .standard) {
            self.limits = limits
        }

        /// Takes what it can from the start of `bytes`, which must begin where the previous call
        /// stopped: the reply once it is complete, and the bytes taken (the caller drops them and
        /// passes the rest, followed by what arrives next, to the next call). Stops after one reply.
        /// Throws on anything that is not RESP2 within `limits`; the parser is not used after that.
        mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(ProtocolError) -> Step {
            var index = 0
            while true {
                let value: RedisValue
                if let length = pendingBulk {
                    // Taken whole once all its bytes are there; until then each piece costs one comparison.
                    guard bytes.count - index >= length + 2 else { return Step(value: nil, consumed: index) }
                    guard bytes[index + length] == 0x0D, bytes[index + length + 1] == 0x0A else {
                        throw ProtocolError(description: "bulk string not followed by CR LF")
                    }
                    value = .string(Array(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + length)])))
                    index += length + 2
                    pendingBulk = nil
                } else {
                    guard index < bytes.count, let content = try line(bytes, from: index + 1) else {
                        return Step(value: nil, consumed: index)
                    }
                    let type = bytes[index]
                    replyBytes += content.upperBound + 2 - index
                    guard replyBytes <= limits.maxReply else { throw ProtocolError(description: "reply larger than \(limits.maxReply) bytes") }
                    index = content.upperBound + 2
                    switch type {
                    case UInt8(ascii: "+"):
                        value = .status(RESP.text(bytes, content))
                    case UInt8(ascii: "-"):
                        value = .error(RESP.text(bytes, content))
                    case UInt8(ascii: ":"):
                        value = .integer(try RESP.integer(bytes, content))
                    case UInt8(ascii: "$"):
                        let length = try RESP.integer(bytes, content)
                        if length == -1 {
                            value = .null
                            break
                        }
                        guard length >= 0 else { throw ProtocolError(description: "bulk length \(length) out of range") }
                        guard length <= Int64(limits.maxReply - replyBytes - 2) else {
                            throw ProtocolError(description: "reply larger than \(limits.maxReply) bytes")
                        }
                        replyBytes += Int(length) + 2
                        pendingBulk = Int(length)
                        continue
                    case UInt8(ascii: "*"):
                        let count = try RESP.integer(bytes, content)
                        if count == -1 {
                            value = .null
                            break
                        }
                        guard count >= 0 else { throw ProtocolError(description: "array length \(count) out of range") }
                        guard count <= Int64(limits.maxElements - replyElements) else {
                            throw ProtocolError(description: "reply of more than \(limits.maxElements) elements")
                        }
                        guard outer.count + (innermost == nil ? 0 : 1) < limits.maxDepth else {
                            throw ProtocolError(description: "arrays nested deeper than \(limits.maxDepth)")
                        }
                        if count == 0 {
                            value = .array([])
                            break
                        }
                        replyElements += Int(count)
                        if let enclosing = innermost.take() { outer.append(enclosing) }
                        // Reserve only what the bytes present could hold (every element takes at least 3 bytes).
                        innermost = OpenArray(count: Int(count), reserving: min(Int(count), (bytes.count - index) / 3))
                        continue
                    default:
                        throw ProtocolError(description: "unknown reply type \(type)")
                    }
                }
                guard let reply = innermost == nil ? value : place(value) else { continue }
                replyBytes = 0
                replyElements = 0
                return Step(value: reply, consumed: index)
            }
        }

        /// Puts a finished value into the innermost open array, closing every array it completes;
        /// the whole reply once nothing is open.
        private mutating func place(_ finished: consuming RedisValue) -> RedisValue? {
            var value = finished
            while innermost != nil {
                innermost!.elements.append(value)
                innermost!.remaining -= 1
                guard innermost!.remaining == 0 else { return nil }
                value = .array(innermost.take()!.elements)
                innermost = outer.popLast()
            }
            return value
        }

        /// The content of the line from `start` (without CR LF), or nil while its end has not arrived;
        /// `scanned` keeps how far it looked, so the next piece is scanned from there, not again.
        private mutating func line(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(ProtocolError) -> Range<Int>? {
            var cursor = start + scanned
            while cursor < bytes.count {
                if bytes[cursor] == 0x0D {
                    guard cursor + 1 < bytes.count else { break }
                    guard bytes[cursor + 1] == 0x0A else { throw ProtocolError(description: "CR without LF") }
                    scanned = 0
                    return start..<cursor
                }
                if bytes[cursor] == 0x0A { throw ProtocolError(description: "LF without CR") }
                cursor += 1
                if cursor - start > limits.maxLine { throw ProtocolError(description: "line longer than \(limits.maxLine) bytes") }
            }
            scanned = cursor - start
            return nil
        }
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
}

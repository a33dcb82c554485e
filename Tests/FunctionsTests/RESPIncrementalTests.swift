import NIOCore
import NIOEmbedded
import Testing

@testable import Functions

/// The incremental RESP2 parser and the channel decoder on their own: a stream of replies split in
/// every way reads could split it parses to the same values as whole; the bytes taken are never passed
/// again; each reply is bounded on its own (docs/redis.md, "RESP2 parser").
struct RESPIncrementalTests {
    /// Every reply type, CR LF inside bulk strings, empty and null values, nesting to the depth limit
    /// and an array of a few thousand fields, back to back as a pipelined connection receives them.
    static let replies: [(text: [UInt8], value: RedisValue)] = {
        var cases: [(String, RedisValue)] = [
            ("+OK\r\n", .status("OK")), ("-ERR wrong type\r\n", .error("ERR wrong type")), (":-42\r\n", .integer(-42)),
            ("$7\r\nab\r\ncd\n\r\n", .string(Array("ab\r\ncd\n".utf8))), ("$0\r\n\r\n", .string([])),
            ("$-1\r\n", .null), ("*-1\r\n", .null),
            ("*0\r\n", .array([])), ("*2\r\n*0\r\n$-1\r\n", .array([.array([]), .null])),
            ("*3\r\n:1\r\n*2\r\n+x\r\n*1\r\n$2\r\n\r\n\r\n-e\r\n", .array([.integer(1), .array([.status("x"), .array([.string([0x0D, 0x0A])])]), .error("e")])),
        ]
        var deep = RedisValue.integer(8)
        for _ in 0..<8 { deep = .array([deep]) }
        cases.append((String(repeating: "*1\r\n", count: 8) + ":8\r\n", deep))
        var hash = "*6000\r\n"
        var fields: [RedisValue] = []
        for index in 0..<3000 {
            let field = "field-\(index)"
            let value = String(repeating: "\r\n", count: index % 3) + String(repeating: "v", count: index % 41)
            hash += "$\(field.utf8.count)\r\n\(field)\r\n$\(value.utf8.count)\r\n\(value)\r\n"
            fields += [.string(Array(field.utf8)), .string(Array(value.utf8))]
        }
        cases.append((hash, .array(fields)))
        return cases.map { (Array($0.0.utf8), $0.1) }
    }()

    static var stream: [UInt8] { replies.flatMap(\.text) }

    /// `bytes` handed to one parser in pieces as reads arrive: the bytes taken are dropped, the rest is
    /// passed again in front of the next piece. Every reply completed, and the bytes left over.
    static func parse(_ bytes: [UInt8], pieces: [Int], limits: RESP.Limits = .standard) throws -> (values: [RedisValue], left: Int) {
        var parser = RESP.Parser(limits: limits)
        var pending: [UInt8] = []
        var values: [RedisValue] = []
        var offset = 0
        for size in pieces + [0] {
            let end = min(bytes.count, offset + size)
            pending += bytes[offset..<end]
            offset = end
            while true {
                let step = try pending.withUnsafeBytes { raw throws(RESP.ProtocolError) in try parser.consume(raw) }
                pending.removeFirst(step.consumed)
                guard let value = step.value else { break }
                values.append(value)
            }
        }
        return (values, pending.count)
    }

    /// splitmix64: the same pieces for the same seed, so a failure names the seed that reproduces it.
    struct Pieces: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func aReplySplitIntoAnyPiecesParsesAsWhole() throws {
        let stream = Self.stream
        let expected = Self.replies.map(\.value)
        let whole = try Self.parse(stream, pieces: [stream.count])
        #expect(whole.values == expected && whole.left == 0)
        let bytes = try Self.parse(stream, pieces: Array(repeating: 1, count: stream.count))
        #expect(bytes.values == expected && bytes.left == 0, "1-byte pieces")
        for seed in UInt64(1)...40 {
            var generator = Pieces(state: seed)
            var pieces: [Int] = []
            var total = 0
            while total < stream.count {
                // Mostly small pieces, now and then a large one, as a socket delivers.
                let large = Int.random(in: 0...9, using: &generator) == 0
                let size = large ? Int.random(in: 1...70_000, using: &generator) : Int.random(in: 1...40, using: &generator)
                pieces.append(size)
                total += size
            }
            let split = try Self.parse(stream, pieces: pieces)
            #expect(split.values == expected && split.left == 0, "seed \(seed)")
        }
    }

    /// The parser keeps its place: finished elements of an unfinished array, and the header of a bulk
    /// string whose bytes are still on their way, are taken at once, so the next read starts after them.
    @Test func bytesTakenAreNeverPassedAgain() throws {
        var parser = RESP.Parser()
        func consume(_ text: String) throws -> RESP.Parser.Step {
            try Array(text.utf8).withUnsafeBytes { raw throws(RESP.ProtocolError) in try parser.consume(raw) }
        }
        var step = try consume("*3\r\n$3\r\nabc\r\n:4")
        #expect(step.value == nil && step.consumed == 13, "the array header and its first element are taken")
        step = try consume(":4\r\n$10\r\n0123")
        #expect(step.value == nil && step.consumed == 9, "the second element and the bulk header are taken")
        step = try consume("0123")
        #expect(step.value == nil && step.consumed == 0, "a bulk string is taken whole once its bytes are there")
        step = try consume("0123456789\r\n+next\r\n")
        #expect(step.value == .array([.string(Array("abc".utf8)), .integer(4), .string(Array("0123456789".utf8))]) && step.consumed == 12)
        step = try consume("+next\r\n")
        #expect(step.value == .status("next") && step.consumed == 7)
    }

    /// The decoder in a channel, fed one byte per read: the same replies, in order, and nothing left over
    /// (the large array left out: a channel read per byte is slow in a debug build).
    @Test func theDecoderTakesRepliesOneByteAtATime() throws {
        let replies = Self.replies.dropLast()
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        for byte in replies.flatMap(\.text) { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        var values: [RedisValue] = []
        while let value = try channel.readInbound(as: RedisValue.self) { values.append(value) }
        #expect(values == replies.map(\.value))
        #expect(try channel.finish().isClean)
    }

    @Test func theStandardBoundsAreTheDocumentedOnes() {
        let limits = RESP.Limits.standard
        #expect(limits.maxReply == 64 * 1024 * 1024 && limits.maxElements == 1_000_000 && limits.maxDepth == 8 && limits.maxLine == 64 * 1024)
    }

    /// The bound counts every byte of one reply; a bulk string that would cross it is refused at its
    /// header, before its bytes are waited for; the next reply starts from zero.
    @Test func aReplyOverItsByteBoundIsRefused() throws {
        var limits = RESP.Limits()
        limits.maxReply = 100
        let exact = Array(("$93\r\n" + String(repeating: "x", count: 93) + "\r\n").utf8)
        #expect(exact.count == 100)
        let twice = try Self.parse(exact + exact, pieces: [exact.count * 2], limits: limits)
        #expect(twice.values.count == 2 && twice.left == 0, "each reply is bounded on its own")
        let over = Array(("$94\r\n" + String(repeating: "x", count: 94) + "\r\n").utf8)
        #expect(throws: RESP.ProtocolError(description: "reply larger than 100 bytes")) { _ = try Self.parse(over, pieces: [5], limits: limits) }
        let parts = "*3\r\n" + String(repeating: "$40\r\n" + String(repeating: "y", count: 40) + "\r\n", count: 2) + "$40\r\n"
        #expect(throws: RESP.ProtocolError(description: "reply larger than 100 bytes")) {
            _ = try Self.parse(Array(parts.utf8), pieces: [1000], limits: limits)
        }
        let lines = "*3\r\n" + String(repeating: "+" + String(repeating: "z", count: 40) + "\r\n", count: 3)
        #expect(throws: RESP.ProtocolError(description: "reply larger than 100 bytes")) {
            _ = try Self.parse(Array(lines.utf8), pieces: [1000], limits: limits)
        }
    }

    /// Elements are counted over all the arrays of one reply, not per array.
    @Test func aReplyOverItsElementBoundIsRefused() throws {
        var limits = RESP.Limits()
        limits.maxElements = 5
        let five = Array("*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n:4\r\n".utf8)
        #expect(try Self.parse(five + five, pieces: [1000], limits: limits).values.count == 2)
        let six = Array("*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n".utf8)
        #expect(throws: RESP.ProtocolError(description: "reply of more than 5 elements")) { _ = try Self.parse(six, pieces: [1000], limits: limits) }
    }

    /// Through the channel: the decoder throws, which is what makes the reply handler fail the waiting
    /// calls and close the connection (shown against a real Redis in `RedisLargeReplyTests`).
    @Test func theDecoderRefusesAReplyOverTheBound() throws {
        var limits = RESP.Limits()
        limits.maxReply = 64
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder(limits: limits)))
        try channel.writeInbound(ByteBuffer(bytes: Array("+OK\r\n".utf8)))
        #expect(try channel.readInbound(as: RedisValue.self) == .status("OK"))
        #expect(throws: RESP.ProtocolError(description: "reply larger than 64 bytes")) {
            try channel.writeInbound(ByteBuffer(bytes: Array("$100\r\n".utf8)))
        }
        _ = try? channel.finish()
    }
}

import Foundation
import Logging
import TestSupport
import Testing

@testable import FunctionRuntime

@Suite struct JSONLogHandlerTests {
    @Test func writesOneEscapedObjectPerLine() throws {
        let logs = CapturedLogs()
        var logger = logs.logger(level: .info)
        logger[metadataKey: "request_id"] = "r-1"
        logger.debug("hidden below the level")
        logger.info(
            "quote \" backslash \\ newline \n tab \t é / done",
            metadata: ["count": .stringConvertible(3), "ratio": .stringConvertible(0.5), "ok": .stringConvertible(true),
                       "list": ["a", "b"], "nested": ["k": "v"], "msg": "collides"])
        let lines = logs.lines
        #expect(logs.rawLineCount == 1)
        let line = try #require(lines.first)
        #expect(line["msg"] as? String == "quote \" backslash \\ newline \n tab \t é / done")
        #expect(line["level"] as? String == "info")
        #expect(line["request_id"] as? String == "r-1")
        #expect(line["count"] as? Int == 3)
        #expect(line["ratio"] as? Double == 0.5)
        #expect(line["ok"] as? Bool == true)
        #expect(line["list"] as? [String] == ["a", "b"])
        #expect((line["nested"] as? [String: String]) == ["k": "v"])
        #expect(line["meta.msg"] as? String == "collides")
        #expect(!logs.text.contains(#"\/"#))
    }

    @Test func timestampsAreRFC3339() {
        #expect(Timestamp.format(seconds: 1_795_421_730, nanoseconds: 123_456_789, fractionDigits: 3) == "2026-11-23T08:15:30.123Z")
        #expect(Timestamp.format(seconds: 0, nanoseconds: 5_000, fractionDigits: 6) == "1970-01-01T00:00:00.000005Z")
    }

    @Test func requestIDsAreUUIDv4() {
        let id = RequestIDs.generate()
        #expect(id.count == 36)
        #expect(Array(id)[14] == "4")
        #expect("89ab".contains(Array(id)[19]))
        #expect(RequestIDs.generate() != id)
        #expect(!RequestIDs.isSane(String(repeating: "a", count: 129)))
        #expect(!RequestIDs.isSane(""))
        #expect(!RequestIDs.isSane("a\nb"))
    }

    /// The handler keeps its metadata sorted by key, not in a dictionary: a key set twice keeps the
    /// last value, a key set to nil goes, the provider's fields override the handler's and the
    /// event's override both, and the line lists them in key order.
    @Test func metadataKeepsTheLastValueOfEachKeyInKeyOrder() throws {
        let logs = CapturedLogs()
        let sink = logs.sink
        let provider = Logger.MetadataProvider { ["a": "provided", "p": "provider only"] }
        var logger = Logger(label: "test") { JSONLogHandler(label: $0, sink: sink, level: .info, metadataProvider: provider) }
        logger[metadataKey: "b"] = "first"
        logger[metadataKey: "a"] = "handler"
        logger[metadataKey: "b"] = "second"
        logger[metadataKey: "c"] = "gone"
        logger[metadataKey: "c"] = nil
        logger[metadataKey: "missing"] = nil
        #expect(logger[metadataKey: "b"] == "second")
        #expect(logger[metadataKey: "c"] == nil)
        logger.info("one", metadata: ["z": "event", "p": "event wins"])
        logger.info("two")
        let lines = logs.lines
        try #require(lines.count == 2)
        #expect(lines[0]["a"] as? String == "provided")
        #expect(lines[0]["b"] as? String == "second")
        #expect(lines[0]["c"] == nil)
        #expect(lines[0]["p"] as? String == "event wins")
        #expect(lines[0]["z"] as? String == "event")
        #expect(lines[1]["p"] as? String == "provider only")
        #expect(lines[1]["z"] == nil)
        let first = try #require(logs.text.split(separator: "\n").first.map(String.init))
        let positions = ["\"a\":", "\"b\":", "\"p\":", "\"z\":"].map { first.range(of: $0)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())

        var handler = JSONLogHandler(label: "test", sink: sink)
        handler.metadata = ["y": "1", "x": "2"]
        handler[metadataKey: "w"] = "3"
        #expect(handler.metadata == ["w": "3", "x": "2", "y": "1"])
        handler.metadata = [:]
        #expect(handler.metadata.isEmpty)
    }

    /// `ts` is written from bytes (no `String` in between): RFC 3339 UTC with milliseconds, now.
    @Test func theTimestampIsTheLineFirstFieldInUTC() throws {
        let logs = CapturedLogs()
        let before = Int64(Date().timeIntervalSince1970)
        logs.logger(level: .info).info("now")
        let after = Int64(Date().timeIntervalSince1970)
        let line = try #require(logs.lines.first)
        let ts = try #require(line["ts"] as? String)
        #expect(logs.text.hasPrefix("{\"ts\":\"\(ts)\","))
        #expect(ts.utf8.count == 24 && ts.hasSuffix("Z"))
        let parsed = try #require(ISO8601DateFormatter.withFractionalSeconds.date(from: ts))
        #expect(Int64(parsed.timeIntervalSince1970) >= before && Int64(parsed.timeIntervalSince1970) <= after)
    }

    /// `Timestamp` (the log's and the module's stored timestamps) against Foundation's calendar, from
    /// 1970 to 9999 and at the edges: leap days, year ends, each fraction width.
    @Test func timestampsMatchFoundationsCalendar() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .gmt
        var generator = SystemRandomNumberGenerator()
        let edges: [Int64] = [0, 59, 86_399, 86_400, 951_782_400, 951_868_799, 1_709_164_800, 4_107_542_399, 253_402_300_799]
        let samples = edges + (0..<2000).map { _ in Int64.random(in: 0...253_402_300_799, using: &generator) }
        for seconds in samples {
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(seconds)))
            let expected = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
            #expect(Timestamp.format(seconds: seconds, nanoseconds: 0, fractionDigits: 0) == expected + "Z", "\(seconds)")
            #expect(Timestamp.format(seconds: seconds, nanoseconds: 987_654_321, fractionDigits: 6) == expected + ".987654Z", "\(seconds)")
        }
        #expect(Timestamp.format(seconds: 0, nanoseconds: 7, fractionDigits: 9) == "1970-01-01T00:00:00.000000007Z")
        #expect(Timestamp.format(seconds: 0, nanoseconds: 999_999_999, fractionDigits: 1) == "1970-01-01T00:00:00.9Z")
        // Past the four-digit field: every digit, never a truncated year.
        #expect(Timestamp.format(seconds: 253_402_300_800, nanoseconds: 0, fractionDigits: 0) == "10000-01-01T00:00:00Z")
        #expect(Timestamp.format(seconds: -86_400 * 366 * 1971, nanoseconds: 0, fractionDigits: 0).hasPrefix("-"))
    }

    /// The pool that ids are drawn from hands out every byte once, across refills.
    @Test func randomBytesAreFreshAcrossRefills() {
        var seen = Set<[UInt8]>()
        for _ in 0..<700 {  // 700 × 16 bytes: the 4 KiB pool refills twice
            let id = RandomBytes.take(16)
            #expect(id.count == 16)
            seen.insert(id)
        }
        #expect(seen.count == 700)
        let large = RandomBytes.take(4096)
        #expect(large.count == 4096)
        #expect(Set(large).count > 200)  // 4,096 uniform bytes cover nearly all 256 values
        #expect(RandomBytes.take(5000).count == 4096)
        #expect(RandomBytes.take(-1).isEmpty)
        var refilled = [UInt8](repeating: 0, count: 64)
        RandomBytes.refill(&refilled)
        #expect(refilled.contains { $0 != 0 })
        #expect(Set((0..<50).map { _ in TraceContext.start(from: nil).traceIDText }).count == 50)
    }
}

extension ISO8601DateFormatter {
    fileprivate static var withFractionalSeconds: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}

import Foundation
import FunctionRuntime
import Testing

@testable import Functions

/// docs/audit.md's hash format, pinned: the known-answer vectors, RFC 8785 details, and the parser
/// that reads stored details back for verification.
struct AuditFormatTests {
    static let firstDetails: JSONValue = .object([
        "lead_id": .string("9b2f0d1e-0000-4000-8000-000000000001"), "name": .string("Zoë / \"Z\"\n"), "count": .number(3),
        "mfa": .bool(true), "note": .null, "tags": .array([.string("a"), .string("é")]),
        "b": .object(["y": .number(1), "x": .number(2)]),
    ])

    static func event(seq: Int64, id: String, type: String, details: JSONValue, prev: String) throws -> AuditEvent {
        var event = AuditEvent(
            chainID: "t-acme", seq: seq, eventID: id, tenantID: "t-acme", occurredAt: "2026-11-22T08:15:30.123456Z", actorSub: "u-42",
            actorEmail: "ada@acme.example", eventType: type, severity: "info", details: try AuditJSON(details), prevEventHash: prev,
            currentEventHash: "")
        event.currentEventHash = event.computedHash
        return event
    }

    @Test func knownAnswerVectorsOfTheSpecification() throws {
        let first = try Self.event(
            seq: 1, id: "3f1e9c2a-5b7d-4e8f-9a01-23456789abcd", type: "LEAD_CREATED", details: Self.firstDetails,
            prev: AuditEvent.genesisHash)
        #expect(
            String(decoding: first.canonical, as: UTF8.self)
                == #"{"actor_email":"ada@acme.example","actor_sub":"u-42","chain_id":"t-acme","details":{"b":{"x":2,"y":1},"count":3,"lead_id":"9b2f0d1e-0000-4000-8000-000000000001","mfa":true,"name":"Zoë / \"Z\"\n","note":null,"tags":["a","é"]},"event_id":"3f1e9c2a-5b7d-4e8f-9a01-23456789abcd","event_type":"LEAD_CREATED","occurred_at":"2026-11-22T08:15:30.123456Z","seq":1,"severity":"info","tenant_id":"t-acme"}"#)
        #expect(first.currentEventHash == "cb758cbd5a4af338b80a0d3ea234e89969519c38267f68193ddf0db4a5e37c6c")

        let second = try Self.event(
            seq: 2, id: "3f1e9c2a-5b7d-4e8f-9a01-23456789abce", type: "LEAD_DELETED",
            details: .object(["lead_id": .string("9b2f0d1e-0000-4000-8000-000000000001")]), prev: first.currentEventHash)
        #expect(second.currentEventHash == "214156541e74585aca8b96e05bd0cd8c5e871aabae3ae5b5b062446e0aa3d030")

        var platform = AuditEvent(
            chainID: "platform", seq: 1, eventID: "00000000-0000-4000-8000-000000000002", tenantID: nil,
            occurredAt: "2026-11-22T02:00:00.000000Z", actorSub: nil, actorEmail: nil, eventType: "AUDIT_CHAIN_VERIFIED",
            severity: "info", details: try AuditJSON(.object(["chains": .number(2), "events": .number(10), "breaks": .number(0)])),
            prevEventHash: AuditEvent.genesisHash, currentEventHash: "")
        platform.currentEventHash = platform.computedHash
        #expect(platform.currentEventHash == "ebc55e36aadc77d5f637dac2fcd2f9e297eaffa9775f1d93ca55485c42c635af")
    }

    /// What PostgreSQL hashes under the head's lock (`fnhost_audit_append`) is the canonical form:
    /// `before + occurred_at + "\",\"seq\":" + seq + after`, for hostile details and identifiers too.
    @Test func canonicalPartsFrameTheValuesTheHeadDecides() throws {
        let details: [[String: JSONValue]] = [
            [:], ["lead_id": .string("x")], ["occurred_at": .string("2026"), "seq": .number(3)],
            ["q": .string("\"occurred_at\":\"x\",\"seq\":1,"), "n": .array([.null, .bool(true), .number(-15)])],
            ["\u{212A}": .string("caf\u{E9}\u{0}\n")],
        ]
        for (index, detail) in details.enumerated() {
            for tenant in ["t-acme", "caf\u{E9}", "cafe\u{301}"] as [String?] + [nil] {
                let record = AuditRecord(
                    tenantID: tenant.map { TenantID(trusted: $0) }, actorSub: index % 2 == 0 ? "u-\u{212A}" : nil, actorEmail: "a\"b@x.example",
                    eventType: "LEAD_CREATED", severity: .warning, details: detail)
                let head = ChainHead(seq: Int64(index) * 1_000_003, hash: String(repeating: "b", count: 64), occurredAt: nil)
                let event = try AuditEvent.sealed(record, eventID: "e-\(index)", occurredAt: "2026-12-01T10:00:00.00000\(index)Z", after: head)
                let (before, after) = event.canonicalParts
                let framed = before + Array(event.occurredAt.utf8) + Array("\",\"seq\":\(event.seq)".utf8) + after
                #expect(framed == event.canonical, "\(String(decoding: event.canonical, as: UTF8.self))")
            }
        }
    }

    @Test func sealingAppendsToTheHead() throws {
        let record = AuditRecord(
            tenantID: "t-acme", actorSub: "u-42", actorEmail: "ada@acme.example", eventType: "LEAD_CREATED", severity: .info,
            details: ["n": .number(1)])
        let head = ChainHead(seq: 7, hash: String(repeating: "a", count: 64), occurredAt: "2026-11-22T08:15:30.123456Z")
        let event = try AuditEvent.sealed(record, eventID: "e", occurredAt: head.nextTimestamp(now: "2026-11-22T08:15:29.000000Z"), after: head)
        #expect(event.seq == 8)
        #expect(event.prevEventHash == head.hash)
        #expect(event.occurredAt == "2026-11-22T08:15:30.123456Z", "a clock that stepped back never moves the chain back in time")
        #expect(event.currentEventHash == AuditEvent.hash(prev: head.hash, canonical: event.canonical))
        let platform = try AuditEvent.sealed(
            AuditRecord(tenantID: nil, actorSub: nil, actorEmail: nil, eventType: "X", severity: .critical, details: [:]),
            eventID: "e", occurredAt: "2026-11-22T08:15:30.123456Z", after: .empty)
        #expect(platform.chainID == "platform")
        #expect(platform.seq == 1)
        #expect(platform.prevEventHash == String(repeating: "0", count: 64))
    }

    @Test func canonicalJSONFollowsRFC8785() throws {
        // Members sort by UTF-16 code units: U+10000 (D800 DC00) sorts before U+FFFF, unlike scalar order.
        let value = AuditJSON.object([("\u{FFFF}", .int(1)), ("\u{10000}", .int(2)), ("a", .int(3)), ("B", .int(4)), ("é", .int(5))])
        #expect(value.canonicalText == "{\"B\":4,\"a\":3,\"é\":5,\"\u{10000}\":2,\"\u{FFFF}\":1}")
        // Escapes only what JSON requires; `/` and non-ASCII stay as they are; control characters as \u00xx.
        #expect(AuditJSON.string("a/b\u{01}\u{1F}\t\"\\é").canonicalText == #""a/b\u0001\u001f\t\"\\é""#)
        #expect(AuditJSON.int(-9_007_199_254_740_991).canonicalText == "-9007199254740991")
        // Keys that are canonically equivalent but not identical stay two members (no Dictionary merging).
        let parsed = try AuditJSON.parse("{\"e\u{301}\":1,\"\u{E9}\":2}")
        // Compared as bytes: Swift's `==` on String would treat the two spellings as equal.
        #expect(Array(parsed.canonicalText.utf8) == Array("{\"e\u{301}\":1,\"\u{E9}\":2}".utf8), "0065 0301 sorts before 00E9")
    }

    @Test func detailsRefuseWhatTheFormatCannotHold() {
        #expect(throws: AuditFormatError.self) { try AuditJSON(.number(1.5)) }
        #expect(throws: AuditFormatError.self) { try AuditJSON(.number(9_007_199_254_740_992)) }
        #expect((try? AuditJSON(.string("a\u{0}b"))) == .string("a\u{FFFD}b"), "PostgreSQL cannot store NUL: replaced before hashing")
        for bad in ["{\"a\":1.0}", "{\"a\":1e3}", "{\"a\":90071992547409920}", "{\"a\":\"\\ud800\"}", "{\"a\":1", "{\"a\":1} x", "{'a':1}"] {
            #expect(throws: AuditFormatError.self, "\(bad)") { try AuditJSON.parse(bad) }
        }
    }

    @Test func storedDetailsRoundTripThroughTheParser() throws {
        // jsonb reorders members and adds spaces; the canonical form is unaffected.
        let stored = #"{"b": {"x": 2, "y": 1}, "mfa": true, "tags": ["a", "é", "\ud83d\ude00"], "note": null, "name": "Zo\u00eb / \"Z\"\n", "count": 3}"#
        let parsed = try AuditJSON.parse(stored)
        #expect(parsed.canonicalText == #"{"b":{"x":2,"y":1},"count":3,"mfa":true,"name":"Zoë / \"Z\"\n","note":null,"tags":["a","é","😀"]}"#)
        // Property: canonical text parses back to itself, for the vector's details and nested shapes.
        for value in [try AuditJSON(Self.firstDetails), .object([("k", .array([.object([]), .array([]), .null, .int(-1)]))])] {
            #expect(try AuditJSON.parse(value.canonicalText).canonicalText == value.canonicalText)
        }
    }

    @Test func sinceAcceptsRFC3339AndNormalizesToUTCMicroseconds() {
        #expect(Timestamps.canonical(rfc3339: "2026-11-22T08:15:30Z") == "2026-11-22T08:15:30.000000Z")
        #expect(Timestamps.canonical(rfc3339: "2026-11-22T08:15:30.1234567+02:00") == "2026-11-22T06:15:30.123456Z")
        #expect(Timestamps.canonical(rfc3339: "2026-11-22t08:15:30.5-01:30") == "2026-11-22T09:45:30.500000Z")
        #expect(Timestamps.canonical(rfc3339: "1900-01-01T00:00:00Z") == "1970-01-01T00:00:00.000000Z")
        for bad in ["2026-02-31T00:00:00Z", "2026-11-22 08:15:30Z", "2026-11-22T08:15:30", "2026-13-01T00:00:00Z", "yesterday", "2026-11-22T08:15:30+2:00"] {
            #expect(Timestamps.canonical(rfc3339: bad) == nil, "\(bad)")
        }
    }

    /// Stored timestamps are read and written by arithmetic now (no calendar): against Foundation's
    /// calendar for random instants 1970…9999, leap days included, both ways.
    @Test func storedTimestampsMatchFoundationsCalendar() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .gmt
        var generator = SystemRandomNumberGenerator()
        let edges: [Int64] = [0, 951_782_400_000_000, 1_709_164_800_123_456, 253_402_300_799_999_999]
        for micros in edges + (0..<2000).map({ _ in Int64.random(in: 0...253_402_300_799_999_999, using: &generator) }) {
            let text = Timestamps.string(microseconds: micros)
            let date = Date(timeIntervalSince1970: Double(micros / 1_000_000))
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            let expected = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0,
                c.second ?? 0, Int(micros % 1_000_000))
            #expect(text == expected)
            #expect(Timestamps.microseconds(text) == micros, "\(text)")
            #expect(Timestamps.canonical(rfc3339: text) == text)
        }
        #expect(Timestamps.canonical(rfc3339: "2024-02-29T23:59:60Z") == "2024-02-29T23:59:59.000000Z")
        #expect(Timestamps.canonical(rfc3339: "2023-02-29T00:00:00Z") == nil)
        #expect(Timestamps.canonical(rfc3339: "2000-02-29T00:00:00-00:30") == "2000-02-29T00:30:00.000000Z")
        #expect(Timestamps.microseconds("2026-11-22T08:15:30.12345Z") == nil)
    }

    @Test func cursorsRoundTripAndRejectGarbage() throws {
        let cursor = AuditCursor(occurredAt: "2026-11-22T08:15:30.123456Z", seq: 42, chainID: "t_with_underscores")
        #expect(try AuditCursor(decoding: cursor.encoded) == cursor)
        for bad in ["", "1_2", "x_1_t", "1_0_t", "1_-1_t", "1_1_"] {
            #expect(throws: FunctionError.self, "\(bad)") { try AuditCursor(decoding: bad) }
        }
    }
}

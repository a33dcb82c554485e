import Crypto
import FunctionRuntime

/// One row of `audit_events` (docs/audit.md), exactly as hashed and stored.
struct AuditEvent: Sendable, Equatable {
    static let platformChain = ChainID.platformName
    static let genesisHash = String(repeating: "0", count: 64)

    var chainID: String
    var seq: Int64
    var eventID: String
    var tenantID: String?
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: truncated to microseconds before hashing, stored as hashed.
    var occurredAt: String
    var actorSub: String?
    var actorEmail: String?
    var eventType: String
    var severity: String
    var details: AuditJSON
    var prevEventHash: String
    var currentEventHash: String

    /// RFC 8785 JSON of the hashed fields (every column but the two hashes).
    var canonical: [UInt8] {
        var writer = JSONWriter(capacity: 512)
        write(to: &writer, hashes: false)
        return writer.bytes
    }

    /// The API form (`hashes: true`: every column as a field of the same name) or the hashed form
    /// (`false`). Keys in UTF-16 order, written by hand: these twelve never change.
    func write(to writer: inout JSONWriter, hashes: Bool = true) {
        writer.beginObject()
        writer.field("actor_email", actorEmail)
        writer.field("actor_sub", actorSub)
        writer.field("chain_id", chainID)
        if hashes { writer.field("current_event_hash", currentEventHash) }
        writer.key("details")
        details.writeCanonical(to: &writer)
        writer.field("event_id", eventID)
        writer.field("event_type", eventType)
        writer.field("occurred_at", occurredAt)
        if hashes { writer.field("prev_event_hash", prevEventHash) }
        writer.key("seq")
        writer.int(seq)
        writer.field("severity", severity)
        writer.field("tenant_id", tenantID)
        writer.endObject()
    }

    /// The canonical form split around the two values only the chain's head decides: `canonical` is
    /// `before + occurred_at + "\",\"seq\":" + seq + after` (keys in order, so `occurred_at` is followed by
    /// `seq`). PostgreSQL seals an event under the head's lock from these (`fnhost_audit_append`).
    var canonicalParts: (before: [UInt8], after: [UInt8]) {
        var head = JSONWriter(capacity: 512)
        head.beginObject()
        head.field("actor_email", actorEmail)
        head.field("actor_sub", actorSub)
        head.field("chain_id", chainID)
        head.key("details")
        details.writeCanonical(to: &head)
        head.field("event_id", eventID)
        head.field("event_type", eventType)
        head.key("occurred_at")
        var tail = JSONWriter(capacity: 128)
        tail.field("severity", severity)
        tail.field("tenant_id", tenantID)
        tail.endObject()
        return (head.bytes + [UInt8(ascii: "\"")], [UInt8(ascii: ",")] + tail.bytes)
    }

    /// `lowercase hex SHA-256(prev_event_hash + "\n" + canonical)`.
    static func hash(prev: String, canonical: [UInt8]) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(prev.utf8))
        hasher.update(data: [0x0A])
        hasher.update(data: canonical)
        return Hex.encode(hasher.finalize())
    }

    var computedHash: String { Self.hash(prev: prevEventHash, canonical: canonical) }

    /// The next event of a chain whose head is `head`: seq + 1, linked to the head's hash, sealed.
    static func sealed(_ record: AuditRecord, eventID: String, occurredAt: String, after head: ChainHead) throws(AuditFormatError) -> AuditEvent {
        let tenant = record.tenantID.map { AuditJSON.storable($0.text) }
        var event = AuditEvent(
            chainID: tenant ?? platformChain, seq: head.seq + 1, eventID: eventID, tenantID: tenant,
            occurredAt: occurredAt, actorSub: record.actorSub.map { AuditJSON.storable($0.text) },
            actorEmail: record.actorEmail.map(AuditJSON.storable), eventType: record.eventType, severity: record.severity.rawValue,
            details: try AuditJSON(.object(record.details)), prevEventHash: head.hash, currentEventHash: "")
        event.currentEventHash = event.computedHash
        return event
    }
}

/// The last event of a chain as `audit_chain_heads` records it (seq 0 and 64 zeros before the first).
struct ChainHead: Sendable, Equatable {
    var seq: Int64
    var hash: String
    /// The newest `occurred_at` of the chain; a new event never goes back in time (so newest-first
    /// by time equals newest-first by seq).
    var occurredAt: String?

    static let empty = ChainHead(seq: 0, hash: AuditEvent.genesisHash, occurredAt: nil)

    /// `now`, unless the chain's last event is later (clock step back, another instance's clock).
    func nextTimestamp(now: String) -> String {
        guard let last = occurredAt, last > now else { return now }
        return last
    }
}

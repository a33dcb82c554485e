import Crypto
import FunctionRuntime

/// One row of `audit_events` (SPEC §8), exactly as hashed and stored.
struct AuditEvent: Sendable, Equatable {
    static let platformChain = "platform"
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
        // Keys in UTF-16 order, written by hand: these ten never change.
        writer.beginObject()
        writer.field("actor_email", actorEmail)
        writer.field("actor_sub", actorSub)
        writer.field("chain_id", chainID)
        writer.key("details")
        details.writeCanonical(to: &writer)
        writer.field("event_id", eventID)
        writer.field("event_type", eventType)
        writer.field("occurred_at", occurredAt)
        writer.key("seq")
        writer.int(seq)
        writer.field("severity", severity)
        writer.field("tenant_id", tenantID)
        writer.endObject()
        return writer.bytes
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
        let chain = record.tenantID ?? platformChain
        var event = AuditEvent(
            chainID: chain, seq: head.seq + 1, eventID: eventID, tenantID: record.tenantID.map(AuditJSON.storable),
            occurredAt: occurredAt, actorSub: record.actorSub.map(AuditJSON.storable),
            actorEmail: record.actorEmail.map(AuditJSON.storable), eventType: record.eventType, severity: record.severity.rawValue,
            details: try AuditJSON(.object(record.details)), prevEventHash: head.hash, currentEventHash: "")
        event.currentEventHash = event.computedHash
        return event
    }

    /// The API form: every column as a field of the same name.
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("chain_id", chainID)
        writer.key("seq")
        writer.int(seq)
        writer.field("event_id", eventID)
        writer.field("tenant_id", tenantID)
        writer.field("occurred_at", occurredAt)
        writer.field("actor_sub", actorSub)
        writer.field("actor_email", actorEmail)
        writer.field("event_type", eventType)
        writer.field("severity", severity)
        writer.key("details")
        details.writeCanonical(to: &writer)
        writer.field("prev_event_hash", prevEventHash)
        writer.field("current_event_hash", currentEventHash)
        writer.endObject()
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

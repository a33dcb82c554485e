import FunctionRuntime
import SQLiteNIO

/// The audit log on SQLite: the append runs inside the caller's `BEGIN IMMEDIATE` transaction,
/// which holds the database's single write lock, so the head read and the insert cannot race.
enum SQLiteAudit {
    static let eventColumns = """
        chain_id, seq, event_id, tenant_id, occurred_at, actor_sub, actor_email, event_type, severity, details, \
        prev_event_hash, current_event_hash
        """

    static func append(_ record: AuditRecord, on connection: SQLiteConnection) async throws -> AuditEvent {
        let chain = record.tenantID.map { AuditJSON.storable($0.text) } ?? AuditEvent.platformChain
        var head = ChainHead.empty
        if let row = try await connection.query(
            "SELECT seq, head_hash, last_occurred_at FROM audit_chain_heads WHERE chain_id = ?", [.text(chain)]
        ).first, let seq = row.column("seq")?.integer, let hash = row.column("head_hash")?.string {
            head = ChainHead(seq: Int64(seq), hash: hash, occurredAt: row.column("last_occurred_at")?.string)
        }
        let event = try AuditEvent.sealed(
            record, eventID: RequestIDs.generate(), occurredAt: head.nextTimestamp(now: Timestamps.now()), after: head)
        _ = try await connection.query(
            "INSERT INTO audit_events (\(eventColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                .text(event.chainID), .integer(Int(event.seq)), .text(event.eventID), SQLiteDatabase.text(event.tenantID),
                .text(event.occurredAt), SQLiteDatabase.text(event.actorSub), SQLiteDatabase.text(event.actorEmail),
                .text(event.eventType), .text(event.severity), .text(event.details.canonicalText), .text(event.prevEventHash),
                .text(event.currentEventHash),
            ])
        _ = try await connection.query(
            """
            INSERT INTO audit_chain_heads (chain_id, seq, head_hash, last_occurred_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (chain_id) DO UPDATE SET seq = excluded.seq, head_hash = excluded.head_hash,
                last_occurred_at = excluded.last_occurred_at
            """, [.text(event.chainID), .integer(Int(event.seq)), .text(event.currentEventHash), .text(event.occurredAt)])
        return event
    }

    static func stored(_ row: SQLiteRow) -> StoredAuditEvent? {
        guard let chain = row.column("chain_id")?.string, let seq = row.column("seq")?.integer,
            let eventID = row.column("event_id")?.string, let occurredAt = row.column("occurred_at")?.string,
            let type = row.column("event_type")?.string, let severity = row.column("severity")?.string,
            let detailsText = row.column("details")?.string, let prev = row.column("prev_event_hash")?.string,
            let current = row.column("current_event_hash")?.string
        else { return nil }
        var formatError: String?
        let details: AuditJSON
        do {
            details = try AuditJSON.parse(detailsText)
        } catch {
            details = .null
            formatError = error.description
        }
        return StoredAuditEvent(
            event: AuditEvent(
                chainID: chain, seq: Int64(seq), eventID: eventID, tenantID: row.column("tenant_id")?.string, occurredAt: occurredAt,
                actorSub: row.column("actor_sub")?.string, actorEmail: row.column("actor_email")?.string, eventType: type,
                severity: severity, details: details, prevEventHash: prev, currentEventHash: current),
            formatError: formatError)
    }
}

extension SQLiteDatabase: AuditStore {
    func append(_ record: AuditRecord) async throws(StoreUnavailable) -> AuditEvent {
        try await transaction { connection in try await SQLiteAudit.append(record, on: connection) }
    }

    func auditEvents(_ query: AuditQuery) async throws(StoreUnavailable) -> [AuditEvent] {
        var sql = "SELECT \(SQLiteAudit.eventColumns) FROM audit_events WHERE 1"
        var binds: [SQLiteData] = []
        switch query.scope {
        case .chain(.platform): sql += " AND tenant_id IS NULL"
        case .chain(.tenant(let tenant)):
            sql += " AND tenant_id = ?"
            binds.append(.text(tenant.text))
        case .all: break
        }
        if let type = query.eventType {
            sql += " AND event_type = ?"
            binds.append(.text(type))
        }
        if let since = query.since {
            sql += " AND occurred_at >= ?"
            binds.append(.text(since))
        }
        if let until = query.until {
            sql += " AND occurred_at <= ?"
            binds.append(.text(until))
        }
        if let actor = query.actorSub {
            sql += " AND actor_sub = ?"
            binds.append(.text(actor.text))
        }
        if let cursor = query.cursor {
            sql += query.oldestFirst ? " AND (occurred_at, seq, chain_id) > (?, ?, ?)" : " AND (occurred_at, seq, chain_id) < (?, ?, ?)"
            binds += [.text(cursor.occurredAt), .integer(Int(cursor.seq)), .text(cursor.chainID)]
        }
        sql += query.oldestFirst
            ? " ORDER BY occurred_at ASC, seq ASC, chain_id ASC LIMIT ?" : " ORDER BY occurred_at DESC, seq DESC, chain_id DESC LIMIT ?"
        binds.append(.integer(query.limit))
        return try await run(sql, binds).compactMap(SQLiteAudit.stored).map(\.event)
    }

    func chainIDs() async throws(StoreUnavailable) -> [String] {
        try await run("SELECT chain_id FROM audit_chain_heads ORDER BY chain_id", []).compactMap { $0.column("chain_id")?.string }
    }

    func chainIDsWithEvents() async throws(StoreUnavailable) -> [String] {
        try await run("SELECT DISTINCT chain_id FROM audit_events ORDER BY chain_id", []).compactMap { $0.column("chain_id")?.string }
    }

    func chainHead(_ chain: String) async throws(StoreUnavailable) -> ChainHead? {
        guard let row = try await run(
            "SELECT seq, head_hash, last_occurred_at FROM audit_chain_heads WHERE chain_id = ?", [.text(chain)]
        ).first, let seq = row.column("seq")?.integer, let hash = row.column("head_hash")?.string
        else { return nil }
        return ChainHead(seq: Int64(seq), hash: hash, occurredAt: row.column("last_occurred_at")?.string)
    }

    func lastSeq(_ chain: String) async throws(StoreUnavailable) -> Int64? {
        try await run("SELECT max(seq) AS seq FROM audit_events WHERE chain_id = ?", [.text(chain)])
            .first?.column("seq")?.integer.map(Int64.init)
    }

    func chainEvents(_ chain: String, after: Int64, through: Int64, limit: Int) async throws(StoreUnavailable) -> [StoredAuditEvent] {
        try await run(
            "SELECT \(SQLiteAudit.eventColumns) FROM audit_events WHERE chain_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            [.text(chain), .integer(Int(after)), .integer(Int(through)), .integer(limit)]
        ).compactMap(SQLiteAudit.stored)
    }

    func checkpoints() async throws(StoreUnavailable) -> [ChainID: ChainHead] {
        var result: [ChainID: ChainHead] = [:]
        for row in try await run("SELECT chain_id, seq, event_hash FROM audit_verifier_positions", []) {
            guard let chain = row.column("chain_id")?.string, let seq = row.column("seq")?.integer,
                let hash = row.column("event_hash")?.string
            else { continue }
            result[ChainID(stored: chain)] = ChainHead(seq: Int64(seq), hash: hash, occurredAt: nil)
        }
        return result
    }

    func saveCheckpoint(_ chain: String, _ head: ChainHead) async throws(StoreUnavailable) {
        _ = try await run(
            """
            INSERT INTO audit_verifier_positions (chain_id, seq, event_hash, verified_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (chain_id) DO UPDATE SET seq = excluded.seq, event_hash = excluded.event_hash, verified_at = excluded.verified_at
            """, [.text(chain), .integer(Int(head.seq)), .text(head.hash), .text(Timestamps.now())])
    }
}

extension SQLiteDatabase {
    func treeSize(_ chain: String) async throws(StoreUnavailable) -> Int64 {
        let row = try await run("SELECT max(idx) AS last FROM audit_tree_nodes WHERE chain_id = ? AND level = 0", [.text(chain)]).first
        return row?.column("last")?.integer.map { Int64($0) + 1 } ?? 0
    }

    func treeNodes(_ chain: String, _ nodes: Set<TreeNode>) async throws(StoreUnavailable) -> [TreeNode: [UInt8]] {
        var found: [TreeNode: [UInt8]] = [:]
        let wanted = nodes.sorted()
        for start in stride(from: 0, to: wanted.count, by: 200) {
            let batch = wanted[start..<min(start + 200, wanted.count)]
            var binds: [SQLiteData] = [.text(chain)]
            for node in batch { binds += [.integer(node.level), .integer(Int(node.index))] }
            let pairs = Array(repeating: "(level = ? AND idx = ?)", count: batch.count).joined(separator: " OR ")
            for row in try await run("SELECT level, idx, hash FROM audit_tree_nodes WHERE chain_id = ? AND (\(pairs))", binds) {
                guard let level = row.column("level")?.integer, let index = row.column("idx")?.integer,
                    let hash = row.column("hash")?.string.flatMap(Hex.decode), hash.count == 32
                else { continue }
                found[TreeNode(level: level, index: Int64(index))] = hash
            }
        }
        return found
    }

    func addTreeNodes(_ chain: String, _ nodes: [TreeNode: [UInt8]]) async throws(StoreUnavailable) {
        let sorted = nodes.sorted { $0.key < $1.key }
        for start in stride(from: 0, to: sorted.count, by: 200) {
            let batch = sorted[start..<min(start + 200, sorted.count)]
            var binds: [SQLiteData] = []
            for (node, hash) in batch { binds += [.text(chain), .integer(node.level), .integer(Int(node.index)), .text(Hex.encode(hash))] }
            let rows = Array(repeating: "(?, ?, ?, ?)", count: batch.count).joined(separator: ", ")
            _ = try await run("INSERT INTO audit_tree_nodes (chain_id, level, idx, hash) VALUES \(rows) ON CONFLICT DO NOTHING", binds)
        }
    }

    func latestSignedCheckpoint(_ chain: String) async throws(StoreUnavailable) -> SignedCheckpoint? {
        guard let row = try await run(
            "SELECT tree_size, root_hash, note FROM audit_checkpoints WHERE chain_id = ? ORDER BY tree_size DESC LIMIT 1", [.text(chain)]
        ).first, let size = row.column("tree_size")?.integer, let root = row.column("root_hash")?.string.flatMap(Hex.decode),
            let note = row.column("note")?.string
        else { return nil }
        return SignedCheckpoint(chainID: chain, treeSize: Int64(size), root: root, note: note)
    }

    func saveSignedCheckpoint(_ checkpoint: SignedCheckpoint) async throws(StoreUnavailable) -> Bool {
        let rows = try await run(
            "INSERT INTO audit_checkpoints (chain_id, tree_size, root_hash, note) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING tree_size",
            [.text(checkpoint.chainID), .integer(Int(checkpoint.treeSize)), .text(Hex.encode(checkpoint.root)), .text(checkpoint.note)])
        return !rows.isEmpty
    }
}

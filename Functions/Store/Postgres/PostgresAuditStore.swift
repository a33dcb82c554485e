import FunctionRuntime
import Logging
import PostgresNIO

/// The audit log on PostgreSQL. An append locks the chain's head row (created on first use by
/// the same statement), so appends to one chain queue behind each other while other chains
/// proceed; `PRIMARY KEY (chain_id, seq)` is the last guard against a fork.
enum PostgresAudit {
    static let timestamp = #"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#
    static let eventColumns = """
        chain_id, seq, event_id::text, tenant_id, to_char(occurred_at AT TIME ZONE 'UTC', \(timestamp)), actor_sub, actor_email, \
        event_type, severity, details::text, prev_event_hash, current_event_hash
        """

    typealias EventRow = (String, Int64, String, String?, String, String?, String?, String, String, String, String, String)

    static func stored(_ row: EventRow) -> StoredAuditEvent {
        var formatError: String?
        let details: AuditJSON
        do {
            details = try AuditJSON.parse(row.9)
        } catch {
            details = .null
            formatError = error.description
        }
        return StoredAuditEvent(
            event: AuditEvent(
                chainID: row.0, seq: row.1, eventID: row.2, tenantID: row.3, occurredAt: row.4, actorSub: row.5, actorEmail: row.6,
                eventType: row.7, severity: row.8, details: details, prevEventHash: row.10, currentEventHash: row.11),
            formatError: formatError)
    }

    /// Appends inside the caller's transaction, in one statement (`fnhost_audit_append`, migration 11):
    /// PostgreSQL locks (or creates) the head, takes the next seq and the time (never before the
    /// chain's last), hashes the canonical form around them (`AuditEvent.canonicalParts`), inserts
    /// the event and moves the head. The head stays locked only from this statement to COMMIT (before:
    /// three round trips). The returned hash is checked against the event as Swift seals it, so a
    /// difference between the two sealings can never enter a chain.
    static func append(
        _ record: AuditRecord, on connection: PostgresConnection, _ statements: StatementMode, logger: Logger
    ) async throws -> AuditEvent {
        let draft = try AuditEvent.sealed(record, eventID: RequestIDs.generate(), occurredAt: Timestamps.now(), after: .empty)
        let sealed = try await connection.rows(
            AppendStatement(event: draft, details: draft.details.canonicalText, parts: draft.canonicalParts), statements, logger: logger)
        guard let event = draft.sealedBy(sealed.first) else { throw SealMismatch() }
        return event
    }

    /// PostgreSQL sealed an event differently from Swift: the transaction is rolled back.
    struct SealMismatch: Error {}

    /// What `fnhost_audit_append` answers: seq, occurred_at, prev_event_hash, current_event_hash.
    typealias Seal = (Int64, String, String, String)

    struct AppendStatement: PostgresPreparedStatement {
        static let name = "fnhost.AppendStatement"
        static let sql = """
            SELECT o_seq, o_occurred_at, o_prev_hash, o_hash FROM fnhost_audit_append($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)
            """
        typealias Row = PostgresAudit.Seal
        let event: AuditEvent
        let details: String
        let parts: (before: [UInt8], after: [UInt8])

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 11)
            bindings.appendEventArguments(event, details: details, parts: parts)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }
}

extension PostgresDatabase: AuditStore {
    func append(_ record: AuditRecord) async throws(StoreUnavailable) -> AuditEvent {
        try await transaction(record.tenantID.map { .tenant($0.text) } ?? .platform) { [logger, statements] connection in
            try await PostgresAudit.append(record, on: connection, statements, logger: logger)
        }
    }

    func auditEvents(_ query: AuditQuery) async throws(StoreUnavailable) -> [AuditEvent] {
        if case .all = query.scope { return try await everyChainsEvents(query) }
        var sql = PostgresQuery(unsafeSQL: "SELECT \(PostgresAudit.eventColumns) FROM audit_events WHERE true")
        // Tenant chains are found through the index led by tenant_id; the platform chain is tenant_id IS NULL.
        switch query.scope {
        case .chain(.platform): sql.sql += " AND tenant_id IS NULL"
        case .chain(.tenant(let tenant)):
            sql.sql += " AND tenant_id = $\(sql.binds.count + 1)"
            sql.binds.append(tenant.text)
        case .all: break  // everyChainsEvents
        }
        if let type = query.eventType {
            sql.sql += " AND event_type = $\(sql.binds.count + 1)"
            sql.binds.append(type)
        }
        if let since = query.since {
            sql.sql += " AND occurred_at >= $\(sql.binds.count + 1)::timestamptz"
            sql.binds.append(since)
        }
        if let until = query.until {
            sql.sql += " AND occurred_at <= $\(sql.binds.count + 1)::timestamptz"
            sql.binds.append(until)
        }
        if let actor = query.actorSub {
            sql.sql += " AND actor_sub = $\(sql.binds.count + 1)"
            sql.binds.append(actor.text)
        }
        if let cursor = query.cursor {
            let first = sql.binds.count + 1
            let direction = query.oldestFirst ? ">" : "<"
            sql.sql += " AND (occurred_at, seq, chain_id) \(direction) ($\(first)::timestamptz, $\(first + 1), $\(first + 2))"
            sql.binds.append(cursor.occurredAt)
            sql.binds.append(cursor.seq)
            sql.binds.append(cursor.chainID)
        }
        let order = query.oldestFirst ? "ASC" : "DESC"
        sql.sql += " ORDER BY occurred_at \(order), seq \(order), chain_id \(order) LIMIT $\(sql.binds.count + 1)"
        sql.binds.append(query.limit)
        let statement = sql
        let scope: DatabaseScope
        switch query.scope {
        case .chain(.tenant(let tenant)): scope = .tenant(tenant.text)
        case .chain(.platform), .all: scope = .platform
        }
        return try await events(scope, statement).map(\.event)
    }

    /// A super admin's read of every chain: the schema owner's `fnhost_audit_events_all` (migration 17) applies the
    /// same filters, order and cursor as a chain's query above.
    private func everyChainsEvents(_ query: AuditQuery) async throws(StoreUnavailable) -> [AuditEvent] {
        let cursor = query.cursor
        // The function's rows in its own order are not promised by a scan of it: ordered again here (at most 1,000 rows).
        let order = query.oldestFirst ? "ASC" : "DESC"
        let statement: PostgresQuery = """
            SELECT \(unescaped: PostgresAudit.eventColumns) FROM fnhost_audit_events_all(
                \(query.eventType)::text, \(query.since)::timestamptz, \(query.until)::timestamptz, \(query.actorSub?.text)::text,
                \(cursor?.occurredAt)::timestamptz, \(cursor?.seq)::bigint, \(cursor?.chainID)::text, \(query.oldestFirst)::boolean,
                \(query.limit)::integer)
            ORDER BY occurred_at \(unescaped: order), seq \(unescaped: order), chain_id \(unescaped: order)
            """
        return try await events(.crossTenant(.superAdminAudit), statement).map(\.event)
    }

    private func events(_ scope: DatabaseScope, _ query: PostgresQuery) async throws(StoreUnavailable) -> [StoredAuditEvent] {
        try await read(scope) { [logger] connection in
            var events: [StoredAuditEvent] = []
            for try await row in try await connection.query(query, logger: logger).decode(PostgresAudit.EventRow.self) {
                events.append(PostgresAudit.stored(row))
            }
            return events
        }
    }

    private func strings(_ scope: DatabaseScope, _ query: PostgresQuery) async throws(StoreUnavailable) -> [String] {
        try await read(scope) { [logger] connection in
            var values: [String] = []
            for try await value in try await connection.query(query, logger: logger).decode(String.self) { values.append(value) }
            return values
        }
    }

    func chainIDs() async throws(StoreUnavailable) -> [String] {
        try await strings(.crossTenant(.verifier), "SELECT c FROM fnhost_audit_chain_ids() AS c ORDER BY c")
    }

    func chainIDsWithEvents() async throws(StoreUnavailable) -> [String] {
        // A skip scan over the primary key: one index probe per chain instead of reading every event.
        try await strings(.crossTenant(.verifier), "SELECT fnhost_audit_chains_with_events()")
    }

    func chainHead(_ chain: String) async throws(StoreUnavailable) -> ChainHead? {
        try await read(.chain(chain)) { [logger] connection in
            var head: ChainHead?
            for try await (seq, hash, occurredAt) in try await connection.query(
                """
                SELECT seq, head_hash, to_char(last_occurred_at AT TIME ZONE 'UTC', \(unescaped: PostgresAudit.timestamp))
                FROM audit_chain_heads WHERE chain_id = \(chain)
                """, logger: logger
            ).decode((Int64, String, String?).self) {
                head = ChainHead(seq: seq, hash: hash, occurredAt: occurredAt)
            }
            return head
        }
    }

    func lastSeq(_ chain: String) async throws(StoreUnavailable) -> Int64? {
        try await read(.chain(chain)) { [logger] connection in
            var last: Int64?
            for try await seq in try await connection.query(
                "SELECT seq FROM audit_events WHERE chain_id = \(chain) ORDER BY seq DESC LIMIT 1", logger: logger
            ).decode(Int64.self) {
                last = seq
            }
            return last
        }
    }

    func chainEvents(_ chain: String, after: Int64, through: Int64, limit: Int) async throws(StoreUnavailable) -> [StoredAuditEvent] {
        try await events(
            .chain(chain),
            """
            SELECT \(unescaped: PostgresAudit.eventColumns) FROM audit_events
            WHERE chain_id = \(chain) AND seq > \(after) AND seq <= \(through) ORDER BY seq LIMIT \(limit)
            """)
    }

    func checkpoints() async throws(StoreUnavailable) -> [ChainID: ChainHead] {
        try await withCrossTenantTransaction(.verifier) { [logger] connection in
            var result: [ChainID: ChainHead] = [:]
            for try await (chain, seq, hash) in try await connection.query(
                "SELECT o_chain, o_seq, o_hash FROM fnhost_audit_verifier_positions()", logger: logger
            ).decode((String, Int64, String).self) {
                result[ChainID(stored: chain)] = ChainHead(seq: seq, hash: hash, occurredAt: nil)
            }
            return result
        }
    }

    func saveCheckpoint(_ chain: String, _ head: ChainHead) async throws(StoreUnavailable) {
        _ = try await transaction(.chain(chain)) { [logger] connection in
            try await connection.query(
                """
                INSERT INTO audit_verifier_positions (chain_id, seq, event_hash) VALUES (\(chain), \(head.seq), \(head.hash))
                ON CONFLICT (chain_id) DO UPDATE SET seq = EXCLUDED.seq, event_hash = EXCLUDED.event_hash, verified_at = now()
                """, logger: logger)
            return true
        }
    }
}

extension PostgresDatabase {
    func treeSize(_ chain: String) async throws(StoreUnavailable) -> Int64 {
        try await read(.chain(chain)) { [logger] connection in
            var size: Int64 = 0
            for try await last in try await connection.query(
                "SELECT idx FROM audit_tree_nodes WHERE chain_id = \(chain) AND level = 0 ORDER BY idx DESC LIMIT 1", logger: logger
            ).decode(Int64.self) {
                size = last + 1
            }
            return size
        }
    }

    func treeNodes(_ chain: String, _ nodes: Set<TreeNode>) async throws(StoreUnavailable) -> [TreeNode: [UInt8]] {
        guard !nodes.isEmpty else { return [:] }
        let levels = nodes.map { Int16($0.level) }, indexes = nodes.map(\.index)
        return try await read(.chain(chain)) { [logger] connection in
            var found: [TreeNode: [UInt8]] = [:]
            for try await (level, index, hash) in try await connection.query(
                """
                SELECT n.level, n.idx, n.hash FROM unnest(\(levels)::smallint[], \(indexes)::bigint[]) AS wanted(level, idx)
                JOIN audit_tree_nodes n ON n.chain_id = \(chain) AND n.level = wanted.level AND n.idx = wanted.idx
                """, logger: logger
            ).decode((Int16, Int64, String).self) {
                if let bytes = Hex.decode(hash), bytes.count == 32 { found[TreeNode(level: Int(level), index: index)] = bytes }
            }
            return found
        }
    }

    func addTreeNodes(_ chain: String, _ nodes: [TreeNode: [UInt8]]) async throws(StoreUnavailable) {
        guard !nodes.isEmpty else { return }
        let sorted = nodes.sorted { $0.key < $1.key }
        let levels = sorted.map { Int16($0.key.level) }, indexes = sorted.map(\.key.index), hashes = sorted.map { Hex.encode($0.value) }
        _ = try await transaction(.chain(chain)) { [logger] connection in
            try await connection.query(
                """
                INSERT INTO audit_tree_nodes (chain_id, level, idx, hash)
                SELECT \(chain), level, idx, hash FROM unnest(\(levels)::smallint[], \(indexes)::bigint[], \(hashes)::text[]) AS n(level, idx, hash)
                ON CONFLICT DO NOTHING
                """, logger: logger)
            return true
        }
    }

    func latestSignedCheckpoint(_ chain: String) async throws(StoreUnavailable) -> SignedCheckpoint? {
        try await read(.chain(chain)) { [logger] connection in
            var latest: SignedCheckpoint?
            for try await (size, root, note) in try await connection.query(
                "SELECT tree_size, root_hash, note FROM audit_checkpoints WHERE chain_id = \(chain) ORDER BY tree_size DESC LIMIT 1",
                logger: logger
            ).decode((Int64, String, String).self) {
                if let bytes = Hex.decode(root) { latest = SignedCheckpoint(chainID: chain, treeSize: size, root: bytes, note: note) }
            }
            return latest
        }
    }

    func saveSignedCheckpoint(_ checkpoint: SignedCheckpoint) async throws(StoreUnavailable) -> Bool {
        try await transaction(.chain(checkpoint.chainID)) { [logger] connection in
            var inserted = false
            for try await _ in try await connection.query(
                """
                INSERT INTO audit_checkpoints (chain_id, tree_size, root_hash, note)
                VALUES (\(checkpoint.chainID), \(checkpoint.treeSize), \(Hex.encode(checkpoint.root)), \(checkpoint.note))
                ON CONFLICT DO NOTHING RETURNING tree_size
                """, logger: logger
            ).decode(Int64.self) {
                inserted = true
            }
            return inserted
        }
    }
}

extension AuditEvent {
    /// This draft with the values PostgreSQL decided under the head's lock, if they seal it as Swift
    /// does (nil: no answer, or a different hash).
    func sealedBy(_ seal: PostgresAudit.Seal?) -> AuditEvent? {
        guard let (seq, occurredAt, prev, hash) = seal else { return nil }
        var event = self
        event.seq = seq
        event.occurredAt = occurredAt
        event.prevEventHash = prev
        event.currentEventHash = hash
        return event.computedHash.utf8.elementsEqual(hash.utf8) ? event : nil
    }
}

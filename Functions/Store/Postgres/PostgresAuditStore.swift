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

    /// Appends inside the caller's transaction: lock (or create) the head, seal, insert, move the head.
    static func append(_ record: AuditRecord, on connection: PostgresConnection, logger: Logger) async throws -> AuditEvent {
        let chain = record.tenantID.map { AuditJSON.storable($0.text) } ?? AuditEvent.platformChain
        var head = ChainHead.empty
        let locked = try await connection.query(
            """
            INSERT INTO audit_chain_heads (chain_id, seq, head_hash) VALUES (\(chain), 0, \(AuditEvent.genesisHash))
            ON CONFLICT (chain_id) DO UPDATE SET seq = audit_chain_heads.seq
            RETURNING seq, head_hash, to_char(last_occurred_at AT TIME ZONE 'UTC', \(unescaped: timestamp))
            """, logger: logger)
        for try await (seq, hash, occurredAt) in locked.decode((Int64, String, String?).self) {
            head = ChainHead(seq: seq, hash: hash, occurredAt: occurredAt)
        }
        let event = try AuditEvent.sealed(
            record, eventID: RequestIDs.generate(), occurredAt: head.nextTimestamp(now: Timestamps.now()), after: head)
        let details = event.details.canonicalText
        try await connection.query(
            """
            WITH event AS (
                INSERT INTO audit_events (chain_id, seq, event_id, tenant_id, occurred_at, actor_sub, actor_email, event_type,
                                          severity, details, prev_event_hash, current_event_hash)
                VALUES (\(event.chainID), \(event.seq), \(event.eventID)::uuid, \(event.tenantID), \(event.occurredAt)::timestamptz,
                        \(event.actorSub), \(event.actorEmail), \(event.eventType), \(event.severity), \(details)::jsonb,
                        \(event.prevEventHash), \(event.currentEventHash))
            )
            UPDATE audit_chain_heads SET seq = \(event.seq), head_hash = \(event.currentEventHash),
                   last_occurred_at = \(event.occurredAt)::timestamptz
            WHERE chain_id = \(event.chainID)
            """, logger: logger)
        return event
    }
}

extension PostgresLeadStore: AuditStore {
    func append(_ record: AuditRecord) async throws(StoreUnavailable) -> AuditEvent {
        try await transaction { [logger] connection in
            try await PostgresAudit.append(record, on: connection, logger: logger)
        }
    }

    func auditEvents(_ query: AuditQuery) async throws(StoreUnavailable) -> [AuditEvent] {
        var sql = PostgresQuery(unsafeSQL: "SELECT \(PostgresAudit.eventColumns) FROM audit_events WHERE true")
        // Tenant chains are found through the index led by tenant_id; the platform chain is tenant_id IS NULL.
        switch query.scope {
        case .chain(.platform): sql.sql += " AND tenant_id IS NULL"
        case .chain(.tenant(let tenant)):
            sql.sql += " AND tenant_id = $\(sql.binds.count + 1)"
            sql.binds.append(tenant.text)
        case .all: break
        }
        if let type = query.eventType {
            sql.sql += " AND event_type = $\(sql.binds.count + 1)"
            sql.binds.append(type)
        }
        if let since = query.since {
            sql.sql += " AND occurred_at >= $\(sql.binds.count + 1)::timestamptz"
            sql.binds.append(since)
        }
        if let cursor = query.cursor {
            let first = sql.binds.count + 1
            sql.sql += " AND (occurred_at, seq, chain_id) < ($\(first)::timestamptz, $\(first + 1), $\(first + 2))"
            sql.binds.append(cursor.occurredAt)
            sql.binds.append(cursor.seq)
            sql.binds.append(cursor.chainID)
        }
        sql.sql += " ORDER BY occurred_at DESC, seq DESC, chain_id DESC LIMIT $\(sql.binds.count + 1)"
        sql.binds.append(query.limit)
        let statement = sql
        return try await events(statement).map(\.event)
    }

    private func events(_ query: PostgresQuery) async throws(StoreUnavailable) -> [StoredAuditEvent] {
        try await withDeadline(deadline) { [client, logger] in
            var events: [StoredAuditEvent] = []
            for try await row in try await client.query(query, logger: logger).decode(PostgresAudit.EventRow.self) {
                events.append(PostgresAudit.stored(row))
            }
            return events
        }
    }

    private func strings(_ query: PostgresQuery) async throws(StoreUnavailable) -> [String] {
        try await withDeadline(deadline) { [client, logger] in
            var values: [String] = []
            for try await value in try await client.query(query, logger: logger).decode(String.self) { values.append(value) }
            return values
        }
    }

    func chainIDs() async throws(StoreUnavailable) -> [String] {
        try await strings("SELECT chain_id FROM audit_chain_heads ORDER BY chain_id")
    }

    func chainIDsWithEvents() async throws(StoreUnavailable) -> [String] {
        // A skip scan over the primary key: one index probe per chain instead of reading every event.
        try await strings(
            """
            WITH RECURSIVE chains(id) AS (
                SELECT min(chain_id) FROM audit_events
                UNION ALL
                SELECT (SELECT min(chain_id) FROM audit_events WHERE chain_id > chains.id) FROM chains WHERE chains.id IS NOT NULL
            )
            SELECT id FROM chains WHERE id IS NOT NULL
            """)
    }

    func chainHead(_ chain: String) async throws(StoreUnavailable) -> ChainHead? {
        try await withDeadline(deadline) { [client, logger] in
            var head: ChainHead?
            for try await (seq, hash, occurredAt) in try await client.query(
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
        try await withDeadline(deadline) { [client, logger] in
            var last: Int64?
            for try await seq in try await client.query(
                "SELECT seq FROM audit_events WHERE chain_id = \(chain) ORDER BY seq DESC LIMIT 1", logger: logger
            ).decode(Int64.self) {
                last = seq
            }
            return last
        }
    }

    func chainEvents(_ chain: String, after: Int64, through: Int64, limit: Int) async throws(StoreUnavailable) -> [StoredAuditEvent] {
        try await events(
            """
            SELECT \(unescaped: PostgresAudit.eventColumns) FROM audit_events
            WHERE chain_id = \(chain) AND seq > \(after) AND seq <= \(through) ORDER BY seq LIMIT \(limit)
            """)
    }

    func checkpoints() async throws(StoreUnavailable) -> [ChainID: ChainHead] {
        try await withDeadline(deadline) { [client, logger] in
            var result: [ChainID: ChainHead] = [:]
            for try await (chain, seq, hash) in try await client.query(
                "SELECT chain_id, seq, event_hash FROM audit_checkpoints", logger: logger
            ).decode((String, Int64, String).self) {
                result[ChainID(stored: chain)] = ChainHead(seq: seq, hash: hash, occurredAt: nil)
            }
            return result
        }
    }

    func saveCheckpoint(_ chain: String, _ head: ChainHead) async throws(StoreUnavailable) {
        _ = try await withDeadline(deadline) { [client, logger] in
            try await client.query(
                """
                INSERT INTO audit_checkpoints (chain_id, seq, event_hash) VALUES (\(chain), \(head.seq), \(head.hash))
                ON CONFLICT (chain_id) DO UPDATE SET seq = EXCLUDED.seq, event_hash = EXCLUDED.event_hash, verified_at = now()
                """, logger: logger)
            return true
        }
    }
}

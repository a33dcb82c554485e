import FunctionRuntime
import PostgresNIO

/// The email outbox on PostgreSQL: due rows are claimed with `FOR UPDATE SKIP LOCKED` and a
/// lease, so concurrent dispatchers (other instances) take disjoint rows and a crashed one's rows
/// come back when its lease expires.
extension PostgresDatabase: OutboxStore {
    static let outboxColumns = """
        tenant_id, id::text, idempotency_key, request_hash, template, recipient, vars::text, status, attempts, message_id, \
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        """
    typealias OutboxRow = (String, String, String, String, String, String, String, String, Int32, String?, String)

    static func outboxEmail(_ row: OutboxRow) -> OutboxEmail {
        OutboxEmail(
            tenantID: TenantID(trusted: row.0), id: row.1, idempotencyKey: row.2, requestHash: row.3, template: row.4, to: row.5, vars: row.6,
            status: OutboxEmail.Status(rawValue: row.7) ?? .dead, attempts: Int(row.8), messageID: row.9, createdAt: row.10)
    }

    /// One outbox statement, as a write transaction (a 503 never hides a committed change).
    private func outbox(_ scope: DatabaseScope, _ query: PostgresQuery) async throws(StoreUnavailable) -> [OutboxEmail] {
        try await transaction(scope) { [logger] connection in
            var rows: [OutboxEmail] = []
            for try await row in try await connection.query(query, logger: logger).decode(OutboxRow.self) {
                rows.append(Self.outboxEmail(row))
            }
            return rows
        }
    }

    func enqueue(_ email: OutboxEmail, owner: String, leaseUntil: String) async throws(StoreUnavailable) -> OutboxInsert {
        let inserted = try await outbox(
            .tenant(email.tenantID.text),
            """
            INSERT INTO email_outbox (tenant_id, id, idempotency_key, request_hash, template, recipient, vars, next_attempt_at,
                                      lease_owner, lease_until, created_at)
            VALUES (\(email.tenantID.text), \(email.id)::uuid, \(email.idempotencyKey), \(email.requestHash), \(email.template), \(email.to),
                    \(email.vars)::jsonb, \(email.createdAt)::timestamptz, \(owner), \(leaseUntil)::timestamptz, \(email.createdAt)::timestamptz)
            ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
            RETURNING \(unescaped: Self.outboxColumns)
            """)
        if let row = inserted.first { return .inserted(row) }
        let existing = try await outbox(
            .tenant(email.tenantID.text),
            """
            SELECT \(unescaped: Self.outboxColumns) FROM email_outbox
            WHERE tenant_id = \(email.tenantID.text) AND idempotency_key = \(email.idempotencyKey)
            """)
        guard let row = existing.first else { throw StoreUnavailable(description: "outbox row vanished") }
        return .existing(row)
    }

    func claimDue(owner: String, now: String, leaseUntil: String, limit: Int) async throws(StoreUnavailable) -> [OutboxEmail] {
        // The dispatcher serves every tenant: the explicit cross-tenant path, the schema owner's claim (migration 17).
        try await outbox(
            .crossTenant(.outboxDispatcher),
            """
            SELECT \(unescaped: Self.outboxColumns)
            FROM fnhost_outbox_claim(\(owner), \(now)::timestamptz, \(leaseUntil)::timestamptz, \(limit)::integer)
            """)
    }

    func markSent(_ email: OutboxEmail, owner: String, messageID: String, audit: AuditRecord) async throws(StoreUnavailable) -> Bool {
        try await withTenantTransaction(email.tenantID) { [logger, statements] connection -> Bool in
            var updated = false
            for try await _ in try await connection.query(
                """
                UPDATE email_outbox SET status = 'sent', message_id = \(messageID), sent_at = now(), attempts = attempts + 1,
                       lease_owner = NULL, lease_until = NULL, last_error = NULL
                WHERE tenant_id = \(email.tenantID.text) AND id = \(email.id)::uuid AND status = 'pending' AND lease_owner = \(owner)
                RETURNING id::text
                """, logger: logger
            ).decode(String.self) {
                updated = true
            }
            if updated { _ = try await PostgresAudit.append(audit, on: connection, statements, logger: logger) }
            return updated
        }
    }

    func markRetry(_ email: OutboxEmail, owner: String, attempts: Int, nextAttemptAt: String, error: String) async throws(StoreUnavailable) {
        _ = try await outbox(
            .tenant(email.tenantID.text),
            """
            UPDATE email_outbox SET attempts = \(attempts), next_attempt_at = \(nextAttemptAt)::timestamptz, last_error = \(error),
                   lease_owner = NULL, lease_until = NULL
            WHERE tenant_id = \(email.tenantID.text) AND id = \(email.id)::uuid AND status = 'pending' AND lease_owner = \(owner)
            RETURNING \(unescaped: Self.outboxColumns)
            """)
    }

    func markDead(_ email: OutboxEmail, owner: String, attempts: Int, error: String) async throws(StoreUnavailable) {
        _ = try await outbox(
            .tenant(email.tenantID.text),
            """
            UPDATE email_outbox SET status = 'dead', attempts = \(attempts), last_error = \(error), lease_owner = NULL, lease_until = NULL
            WHERE tenant_id = \(email.tenantID.text) AND id = \(email.id)::uuid AND status = 'pending' AND lease_owner = \(owner)
            RETURNING \(unescaped: Self.outboxColumns)
            """)
    }

    func outboxEmail(tenant: TenantID, id: String) async throws(StoreUnavailable) -> OutboxEmail? {
        let tenant = tenant.text
        return try await outbox(.tenant(tenant), "SELECT \(unescaped: Self.outboxColumns) FROM email_outbox WHERE tenant_id = \(tenant) AND id = \(id)::uuid").first
    }

    func outboxBacklog() async throws(StoreUnavailable) -> (pending: Int, oldest: String?) {
        try await withCrossTenantTransaction(.outboxDispatcher) { [logger] connection in
            var result: (pending: Int, oldest: String?) = (0, nil)
            for try await (count, oldest) in try await connection.query(
                """
                SELECT o_pending, to_char(o_oldest AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM fnhost_outbox_backlog()
                """, logger: logger
            ).decode((Int, String?).self) {
                result = (count, oldest)
            }
            return result
        }
    }
}

extension PostgresDatabase: RevocationTable {
    func storeRevocation(field: String, tenant: TenantID, record: [UInt8], expiresAt: Int64) async throws(StoreUnavailable) {
        let text = String(decoding: record, as: UTF8.self)
        _ = try await withTenantTransaction(tenant) { [logger] connection in
            try await connection.query(
                """
                INSERT INTO session_revocations (field, tenant_id, record, expires_at)
                VALUES (\(field), \(tenant.text), \(text), \(expiresAt)) ON CONFLICT (field) DO NOTHING
                """, logger: logger)
            return true
        }
    }

    func revocationRecords(now: Int64) async throws(StoreUnavailable) -> [[UInt8]] {
        try await withCrossTenantTransaction(.revocationSync) { [logger] connection in
            var records: [[UInt8]] = []
            for try await record in try await connection.query(
                "SELECT fnhost_revocations_in_force(\(now))", logger: logger
            ).decode(String.self) {
                records.append(Array(record.utf8))
            }
            return records
        }
    }

    /// The database's own clock decides what expired (`fnhost_prune_expired`, run as the schema owner): the runtime
    /// role cannot delete a revocation or a purge still in force.
    func pruneRevocations(now: Int64) async throws(StoreUnavailable) {
        _ = try await transaction(.noTenant) { [logger] connection in
            try await connection.query("SELECT fnhost_prune_expired()", logger: logger)
            return true
        }
    }

    func storePurge(_ purge: PurgeRecord) async throws(StoreUnavailable) {
        let user = purge.user?.text
        _ = try await withTenantTransaction(purge.tenant) { [logger] connection in
            try await connection.query(
                """
                INSERT INTO rbac_purges (tenant_id, user_id, purged_at, expires_at)
                VALUES (\(purge.tenant.text), \(user), \(purge.purgedAt), \(purge.expiresAt))
                """, logger: logger)
            return true
        }
    }

    func purgeRecords(now: Int64) async throws(StoreUnavailable) -> [PurgeRecord] {
        try await withCrossTenantTransaction(.revocationSync) { [logger] connection in
            var records: [PurgeRecord] = []
            for try await (tenant, user, at, expires) in try await connection.query(
                "SELECT o_tenant, o_user, o_purged_at, o_expires_at FROM fnhost_purges_in_force(\(now))", logger: logger
            ).decode((String, String?, Double, Int64).self) {
                guard let tenantID = TenantID(validating: tenant), at.isFinite else { continue }
                let userID = user.flatMap(UserID.init(validating:))
                if user != nil, userID == nil { continue }
                records.append(PurgeRecord(tenant: tenantID, user: userID, purgedAt: at, expiresAt: expires))
            }
            return records
        }
    }
}

import FunctionRuntime
import SQLiteNIO

/// The email outbox on SQLite: claims run in a `BEGIN IMMEDIATE` transaction (the single write
/// lock orders dispatchers, also across processes on one file) and set the same lease.
extension SQLiteDatabase: OutboxStore {
    func outboxBacklog() async throws(StoreUnavailable) -> (pending: Int, oldest: String?) {
        let row = try await run("SELECT count(*) AS pending, min(created_at) AS oldest FROM email_outbox WHERE status = 'pending'", []).first
        return (row?.column("pending")?.integer ?? 0, row?.column("oldest")?.string)
    }

    static let outboxColumns = "tenant_id, id, idempotency_key, request_hash, template, recipient, vars, status, attempts, message_id, created_at"

    static func outboxEmail(_ row: SQLiteRow) -> OutboxEmail? {
        guard let tenant = row.column("tenant_id")?.string, let id = row.column("id")?.string,
            let key = row.column("idempotency_key")?.string, let hash = row.column("request_hash")?.string,
            let template = row.column("template")?.string, let to = row.column("recipient")?.string, let vars = row.column("vars")?.string,
            let status = row.column("status")?.string, let attempts = row.column("attempts")?.integer,
            let createdAt = row.column("created_at")?.string
        else { return nil }
        return OutboxEmail(
            tenantID: TenantID(trusted: tenant), id: id, idempotencyKey: key, requestHash: hash, template: template, to: to, vars: vars,
            status: OutboxEmail.Status(rawValue: status) ?? .dead, attempts: attempts, messageID: row.column("message_id")?.string,
            createdAt: createdAt)
    }

    func enqueue(_ email: OutboxEmail, owner: String, leaseUntil: String) async throws(StoreUnavailable) -> OutboxInsert {
        try await transaction { connection -> OutboxInsert in
            let inserted = try await connection.query(
                """
                INSERT INTO email_outbox (tenant_id, id, idempotency_key, request_hash, template, recipient, vars, next_attempt_at,
                                          lease_owner, lease_until, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
                RETURNING \(Self.outboxColumns)
                """,
                [
                    .text(email.tenantID.text), .text(email.id), .text(email.idempotencyKey), .text(email.requestHash), .text(email.template),
                    .text(email.to), .text(email.vars), .text(email.createdAt), .text(owner), .text(leaseUntil), .text(email.createdAt),
                ]
            ).compactMap(Self.outboxEmail)
            if let row = inserted.first { return .inserted(row) }
            let existing = try await connection.query(
                "SELECT \(Self.outboxColumns) FROM email_outbox WHERE tenant_id = ? AND idempotency_key = ?",
                [.text(email.tenantID.text), .text(email.idempotencyKey)]
            ).compactMap(Self.outboxEmail)
            guard let row = existing.first else { throw StoreUnavailable(description: "outbox row vanished") }
            return .existing(row)
        }
    }

    func claimDue(owner: String, now: String, leaseUntil: String, limit: Int) async throws(StoreUnavailable) -> [OutboxEmail] {
        try await transaction { connection in
            try await connection.query(
                """
                UPDATE email_outbox SET lease_owner = ?, lease_until = ?
                WHERE (tenant_id, id) IN (
                    SELECT tenant_id, id FROM email_outbox
                    WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
                    ORDER BY next_attempt_at LIMIT ?)
                RETURNING \(Self.outboxColumns)
                """, [.text(owner), .text(leaseUntil), .text(now), .text(now), .integer(limit)]
            ).compactMap(Self.outboxEmail)
        }
    }

    func markSent(_ email: OutboxEmail, owner: String, messageID: String, audit: AuditRecord) async throws(StoreUnavailable) -> Bool {
        let now = Timestamps.now()
        return try await transaction { connection -> Bool in
            let updated = !(try await connection.query(
                """
                UPDATE email_outbox SET status = 'sent', message_id = ?, sent_at = ?, attempts = attempts + 1,
                       lease_owner = NULL, lease_until = NULL, last_error = NULL
                WHERE tenant_id = ? AND id = ? AND status = 'pending' AND lease_owner = ?
                RETURNING id
                """, [.text(messageID), .text(now), .text(email.tenantID.text), .text(email.id), .text(owner)]
            ).isEmpty)
            if updated { _ = try await SQLiteAudit.append(audit, on: connection) }
            return updated
        }
    }

    func markRetry(_ email: OutboxEmail, owner: String, attempts: Int, nextAttemptAt: String, error: String) async throws(StoreUnavailable) {
        _ = try await run(
            """
            UPDATE email_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, lease_owner = NULL, lease_until = NULL
            WHERE tenant_id = ? AND id = ? AND status = 'pending' AND lease_owner = ?
            """, [.integer(attempts), .text(nextAttemptAt), .text(error), .text(email.tenantID.text), .text(email.id), .text(owner)])
    }

    func markDead(_ email: OutboxEmail, owner: String, attempts: Int, error: String) async throws(StoreUnavailable) {
        _ = try await run(
            """
            UPDATE email_outbox SET status = 'dead', attempts = ?, last_error = ?, lease_owner = NULL, lease_until = NULL
            WHERE tenant_id = ? AND id = ? AND status = 'pending' AND lease_owner = ?
            """, [.integer(attempts), .text(error), .text(email.tenantID.text), .text(email.id), .text(owner)])
    }

    func outboxEmail(tenant: TenantID, id: String) async throws(StoreUnavailable) -> OutboxEmail? {
        let tenant = tenant.text
        return try await run("SELECT \(Self.outboxColumns) FROM email_outbox WHERE tenant_id = ? AND id = ?", [.text(tenant), .text(id)])
            .compactMap(Self.outboxEmail).first
    }
}

extension SQLiteDatabase: RevocationTable {
    func storeRevocation(field: String, tenant: TenantID, record: [UInt8], expiresAt: Int64) async throws(StoreUnavailable) {
        _ = try await run(
            "INSERT INTO session_revocations (field, tenant_id, record, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (field) DO NOTHING",
            [.text(field), .text(tenant.text), .text(String(decoding: record, as: UTF8.self)), .integer(Int(expiresAt))])
    }

    func revocationRecords(now: Int64) async throws(StoreUnavailable) -> [[UInt8]] {
        try await run("SELECT record FROM session_revocations WHERE expires_at > ?", [.integer(Int(now))]).compactMap {
            $0.column("record")?.string.map { Array($0.utf8) }
        }
    }

    func pruneRevocations(now: Int64) async throws(StoreUnavailable) {
        _ = try await run("DELETE FROM session_revocations WHERE expires_at <= ?", [.integer(Int(now))])
        _ = try await run("DELETE FROM rbac_purges WHERE expires_at <= ?", [.integer(Int(now))])
    }

    func storePurge(_ purge: PurgeRecord) async throws(StoreUnavailable) {
        _ = try await run(
            "INSERT INTO rbac_purges (tenant_id, user_id, purged_at, expires_at) VALUES (?, ?, ?, ?)",
            [.text(purge.tenant.text), purge.user.map { .text($0.text) } ?? .null, .float(purge.purgedAt), .integer(Int(purge.expiresAt))])
    }

    func purgeRecords(now: Int64) async throws(StoreUnavailable) -> [PurgeRecord] {
        try await run("SELECT tenant_id, user_id, purged_at, expires_at FROM rbac_purges WHERE expires_at > ?", [.integer(Int(now))])
            .compactMap { row in
                guard let tenant = row.column("tenant_id")?.string.flatMap(TenantID.init(validating:)),
                    let at = row.column("purged_at")?.double, at.isFinite, let expires = row.column("expires_at")?.integer
                else { return nil }
                let userText = row.column("user_id")?.string
                let user = userText.flatMap(UserID.init(validating:))
                if userText != nil, user == nil { return nil }
                return PurgeRecord(tenant: tenant, user: user, purgedAt: at, expiresAt: Int64(expires))
            }
    }
}

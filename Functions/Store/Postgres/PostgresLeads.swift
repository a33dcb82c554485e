import Foundation
import FunctionRuntime
import Logging
import PostgresNIO

/// The leads repository on PostgreSQL: listings through prepared SQL functions (migration 7), writes
/// in `withTenantTransaction` with their audit event appended in the same transaction.
extension PostgresDatabase: LeadStore {
    static let columns = """
        id::text, name, email, phone, company, status, notes, created_by, \
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), \
        to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        """

    /// One lead as the listing and the writes return it: the columns of `columns`, in order.
    typealias Row = (String, String, String, String?, String?, String, String?, String, String, String)

    private static func lead(_ row: Row) -> Lead {
        Lead(
            id: row.0, name: row.1, email: row.2, phone: row.3, company: row.4, status: row.5, notes: row.6,
            createdBy: row.7, createdAt: row.8, updatedAt: row.9)
    }

    private static func collect(_ rows: PostgresRowSequence) async throws -> [Lead] {
        var leads: [Lead] = []
        for try await row in rows.decode(Row.self) { leads.append(lead(row)) }
        return leads
    }

    // The hot reads are prepared statements (parsed and planned once per connection) of SQL
    // functions (migration 7) that set the row-level-security tenant and query in one round trip.
    struct FirstPage: LeadPageStatement {
        static let name = "fnhost.FirstPage"
        static let sql = "SELECT * FROM fnhost_leads_page($1, $2, NULL, NULL)"
        typealias Row = PostgresDatabase.Row
        let tenant: String
        var cursor: LeadCursor? { nil }
        let limit: Int

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    struct NextPage: LeadPageStatement {
        static let name = "fnhost.NextPage"
        static let sql = "SELECT * FROM fnhost_leads_page($1, $4, $2::timestamptz, $3::uuid)"
        typealias Row = PostgresDatabase.Row
        let tenant: String
        let cursor: LeadCursor?
        let limit: Int

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// A whole page built by PostgreSQL: the items as one JSON array, whether more follow, and the
    /// position of the page's last lead for the cursor — one row whatever the page size, read with the
    /// other pages this event loop's requests ask for meanwhile (`PageBatches`, migration 12).
    func listPage(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> LeadPage {
        let span = Tracing.start("postgres fnhost_leads_json_pages", attributes: [("db.system", .string("postgresql"))])
        defer { span?.end() }
        return try await pool.pages.page(PageBatches.Request(tenant: tenant, limit: limit, cursor: cursor), deadline: deadline)
    }

    /// A create without an idempotency key: the lead and its audit event committed with the other
    /// creates this event loop's requests ask for meanwhile, in one statement and one transaction, each
    /// create in a savepoint of its own (`CreateBatches`, migration 14); alone, one statement of
    /// `fnhost_create_lead` (migration 11). The deadline answers 503 while the create waits for its batch
    /// or a connection; once sent the database decides (it fails the statement past the deadline), and
    /// only a lost connection leaves the outcome unknown; a value it refuses is this create's 400 alone.
    private func createInBatch(tenant: TenantID, lead: Lead, audit: AuditRecord) async throws(StoreUnavailable) -> CreateOutcome {
        let span = Tracing.start("postgres fnhost_create_leads", attributes: [("db.system", .string("postgresql"))])
        defer { span?.end() }
        // Sealed before anything is sent: a record the format refuses fails here, plainly not committed.
        let draft: AuditEvent
        do {
            draft = try AuditEvent.sealed(audit, eventID: RequestIDs.generate(), occurredAt: Timestamps.now(), after: .empty)
        } catch {
            throw StoreUnavailable(description: String(describing: type(of: error)))
        }
        return try await pool.creates.create(CreateBatches.Item(tenant: tenant, lead: lead, draft: draft), deadline: deadline)
    }

    struct CreateLeadStatement: PostgresPreparedStatement {
        static let name = "fnhost.CreateLeadStatement"
        static let sql = """
            SELECT o_seq, o_occurred_at, o_prev_hash, o_hash FROM fnhost_create_lead(
                $1, $2, $3::uuid, $4, $5, $6, $7, $8, $9, $10, $11::timestamptz, $12::timestamptz,
                $13, $14::uuid, $15, $16, $17, $18, $19, $20, $21::jsonb, $22, $23)
            """
        typealias Row = PostgresAudit.Seal
        let tenant: String
        let limit: Int32
        let lead: Lead
        let event: AuditEvent
        let details: String
        let parts: (before: [UInt8], after: [UInt8])

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 23)
            bindings.append(tenant)
            bindings.append(limit)
            bindings.appendLeadColumns(lead)
            bindings.appendEventArguments(event, details: details, parts: parts)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// A new lead (prepared: the write path's statements are parsed and planned once per connection).
    struct InsertLead: PostgresPreparedStatement {
        static let name = "fnhost.InsertLead"
        static let sql = """
            INSERT INTO leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at)
            VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz, $11::timestamptz)
            """
        typealias Row = Void
        let tenant: String
        let lead: Lead

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 11)
            bindings.append(tenant)
            bindings.appendLeadColumns(lead)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws {}
    }

    struct ByID: PostgresPreparedStatement {
        static let name = "fnhost.ByID"
        static let sql = "SELECT * FROM fnhost_lead($1, $2::uuid)"
        typealias Row = PostgresDatabase.Row
        let tenant: String
        let id: String

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 2)
            bindings.append(tenant)
            bindings.append(id)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    private static func collect<S: AsyncSequence>(_ rows: S) async throws -> [Lead] where S.Element == Row {
        var leads: [Lead] = []
        for try await row in rows { leads.append(lead(row)) }
        return leads
    }

    func list(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [Lead] {
        let tenant = tenant.text
        return try await withDeadline(deadline) { [client, statements, logger] in
            if let cursor {
                return try await client.rows(NextPage(tenant: tenant, cursor: cursor, limit: limit), statements, logger: logger).map(Self.lead)
            }
            return try await client.rows(FirstPage(tenant: tenant, limit: limit), statements, logger: logger).map(Self.lead)
        }
    }

    func get(tenant: TenantID, id: String) async throws(StoreUnavailable) -> Lead? {
        let tenant = tenant.text
        return try await withDeadline(deadline) { [client, statements, logger] in
            try await client.rows(ByID(tenant: tenant, id: id), statements, logger: logger).first.map(Self.lead)
        }
    }

    func create(
        tenant: TenantID, lead: Lead, audit: AuditRecord, idempotency: CreateIdempotency?
    ) async throws(StoreUnavailable) -> CreateOutcome {
        guard let idempotency else { return try await createInBatch(tenant: tenant, lead: lead, audit: audit) }
        let scope = tenant
        let tenant = tenant.text
        return try await withTenantTransaction(scope) { [logger, statements] connection -> CreateOutcome in
            // Claims the key; a concurrent request with the same key waits here until the first commits.
            var claimed = false
            for try await _ in try await connection.query(
                """
                INSERT INTO lead_requests (tenant_id, idempotency_key, request_hash, lead_id, response)
                VALUES (\(tenant), \(idempotency.key), \(idempotency.requestHash), \(lead.id)::uuid, \(idempotency.response))
                ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING 1
                """, logger: logger
            ).decode(Int.self) {
                claimed = true
            }
            if !claimed {
                for try await (hash, response) in try await connection.query(
                    "SELECT request_hash, response FROM lead_requests WHERE tenant_id = \(tenant) AND idempotency_key = \(idempotency.key)",
                    logger: logger
                ).decode((String, String).self) {
                    return hash.utf8.elementsEqual(idempotency.requestHash.utf8) ? .replayed(response: response) : .conflict
                }
                return .conflict
            }
            _ = try await connection.rows(InsertLead(tenant: tenant, lead: lead), statements, logger: logger)
            _ = try await PostgresAudit.append(audit, on: connection, statements, logger: logger)
            return .created
        }
    }

    func update(
        tenant: TenantID, id: String, fields: LeadFields, updatedAt: String, audit: AuditRecord
    ) async throws(StoreUnavailable) -> Lead? {
        let scope = tenant
        let tenant = tenant.text
        // Absent fields keep their value: each column is set only when its flag says so.
        func flag<V>(_ change: LeadFields.Change<V>) -> Bool { if case .set = change { true } else { false } }
        func value(_ change: LeadFields.Change<String>) -> String? { if case .set(let v) = change { v } else { nil } }
        func optionalValue(_ change: LeadFields.Change<String?>) -> String? { if case .set(let v) = change { v } else { nil } }
        let (setName, name) = (flag(fields.name), value(fields.name))
        let (setEmail, email) = (flag(fields.email), value(fields.email))
        let (setPhone, phone) = (flag(fields.phone), optionalValue(fields.phone))
        let (setCompany, company) = (flag(fields.company), optionalValue(fields.company))
        let (setStatus, status) = (flag(fields.status), value(fields.status))
        let (setNotes, notes) = (flag(fields.notes), optionalValue(fields.notes))
        return try await withTenantTransaction(scope) { [logger, statements] connection -> Lead? in
            let updated = try await Self.collect(
                try await connection.query(
                    """
                    UPDATE leads SET
                      name = CASE WHEN \(setName) THEN \(name) ELSE name END,
                      email = CASE WHEN \(setEmail) THEN \(email) ELSE email END,
                      phone = CASE WHEN \(setPhone) THEN \(phone) ELSE phone END,
                      company = CASE WHEN \(setCompany) THEN \(company) ELSE company END,
                      status = CASE WHEN \(setStatus) THEN \(status) ELSE status END,
                      notes = CASE WHEN \(setNotes) THEN \(notes) ELSE notes END,
                      updated_at = \(updatedAt)::timestamptz
                    WHERE tenant_id = \(tenant) AND id = \(id)::uuid
                    RETURNING \(unescaped: Self.columns)
                    """, logger: logger)
            ).first
            if updated != nil { _ = try await PostgresAudit.append(audit, on: connection, statements, logger: logger) }
            return updated
        }
    }

    func delete(tenant: TenantID, id: String, audit: AuditRecord) async throws(StoreUnavailable) -> Bool {
        let scope = tenant
        let tenant = tenant.text
        return try await withTenantTransaction(scope) { [logger, statements] connection -> Bool in
            let rows = try await connection.query(
                "DELETE FROM leads WHERE tenant_id = \(tenant) AND id = \(id)::uuid RETURNING id::text", logger: logger)
            var deleted = false
            for try await _ in rows.decode(String.self) { deleted = true }
            if deleted { _ = try await PostgresAudit.append(audit, on: connection, statements, logger: logger) }
            return deleted
        }
    }
}

/// A page of a tenant's leads: `$1` tenant, then the cursor's `created_at` and `id` when there is
/// one, then the limit — the same bindings for the row and the JSON form of a listing.
protocol LeadPageStatement: PostgresPreparedStatement {
    var tenant: String { get }
    var cursor: LeadCursor? { get }
    var limit: Int { get }
}

extension LeadPageStatement {
    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 4)
        bindings.append(tenant)
        if let cursor {
            bindings.append(cursor.createdAt)
            bindings.append(cursor.id)
        }
        bindings.append(limit)
        return bindings
    }
}

extension PostgresBindings {
    /// A lead's columns after its tenant, in `leads` order: id, name, email, phone, company, status,
    /// notes, created_by, created_at, updated_at (the insert statement and `fnhost_create_lead`).
    mutating func appendLeadColumns(_ lead: Lead) {
        append(lead.id)
        append(lead.name)
        append(lead.email)
        append(lead.phone)
        append(lead.company)
        append(lead.status)
        append(lead.notes)
        append(lead.createdBy)
        append(lead.createdAt)
        append(lead.updatedAt)
    }

    /// An event's arguments to `fnhost_audit_append` (and the tail of `fnhost_create_lead`'s): chain,
    /// event id, tenant, the caller's time, actor, type, severity, details, the canonical form's parts.
    mutating func appendEventArguments(_ event: AuditEvent, details: String, parts: (before: [UInt8], after: [UInt8])) {
        append(event.chainID)
        append(event.eventID)
        append(event.tenantID)
        append(event.occurredAt)
        append(event.actorSub)
        append(event.actorEmail)
        append(event.eventType)
        append(event.severity)
        append(details)
        append(ByteBuffer(bytes: parts.before))
        append(ByteBuffer(bytes: parts.after))
    }
}

import Foundation
import Logging
import SQLiteNIO

/// The leads repository on SQLite: every statement filters on the caller's tenant; writes append
/// their audit event in the same transaction.
extension SQLiteDatabase: LeadStore {
    private static let columns = "id, name, email, phone, company, status, notes, created_by, created_at, updated_at"

    private static func lead(_ row: SQLiteRow) -> Lead? {
        guard let id = row.column("id")?.string, let name = row.column("name")?.string,
            let email = row.column("email")?.string, let status = row.column("status")?.string,
            let createdBy = row.column("created_by")?.string, let createdAt = row.column("created_at")?.string,
            let updatedAt = row.column("updated_at")?.string
        else { return nil }
        return Lead(
            id: id, name: name, email: email, phone: row.column("phone")?.string, company: row.column("company")?.string,
            status: status, notes: row.column("notes")?.string, createdBy: createdBy, createdAt: createdAt, updatedAt: updatedAt)
    }

    func list(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [Lead] {
        let tenant = tenant.text
        let rows: [SQLiteRow]
        if let cursor {
            rows = try await run(
                """
                SELECT \(Self.columns) FROM leads WHERE tenant_id = ? AND (created_at, id) < (?, ?)
                ORDER BY created_at DESC, id DESC LIMIT ?
                """, [.text(tenant), .text(cursor.createdAt), .text(cursor.id), .integer(limit)])
        } else {
            rows = try await run(
                "SELECT \(Self.columns) FROM leads WHERE tenant_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                [.text(tenant), .integer(limit)])
        }
        return rows.compactMap(Self.lead)
    }

    func get(tenant: TenantID, id: String) async throws(StoreUnavailable) -> Lead? {
        let tenant = tenant.text
        return try await run("SELECT \(Self.columns) FROM leads WHERE tenant_id = ? AND id = ?", [.text(tenant), .text(id)])
            .compactMap(Self.lead).first
    }

    func create(
        tenant: TenantID, lead: Lead, audit: AuditRecord, idempotency: CreateIdempotency?
    ) async throws(StoreUnavailable) -> CreateOutcome {
        let tenant = tenant.text
        let binds: [SQLiteData] = [
            .text(tenant), .text(lead.id), .text(lead.name), .text(lead.email), Self.text(lead.phone), Self.text(lead.company),
            .text(lead.status), Self.text(lead.notes), .text(lead.createdBy), .text(lead.createdAt), .text(lead.updatedAt),
        ]
        return try await transaction { connection -> CreateOutcome in
            if let idempotency {
                let seen = try await connection.query(
                    "SELECT request_hash, response FROM lead_requests WHERE tenant_id = ? AND idempotency_key = ?",
                    [.text(tenant), .text(idempotency.key)]
                ).first
                if let seen, let hash = seen.column("request_hash")?.string, let response = seen.column("response")?.string {
                    return hash.utf8.elementsEqual(idempotency.requestHash.utf8) ? .replayed(response: response) : .conflict
                }
                _ = try await connection.query(
                    "INSERT INTO lead_requests (tenant_id, idempotency_key, request_hash, lead_id, response) VALUES (?, ?, ?, ?, ?)",
                    [.text(tenant), .text(idempotency.key), .text(idempotency.requestHash), .text(lead.id), .text(idempotency.response)])
            }
            _ = try await connection.query(
                """
                INSERT INTO leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, binds)
            _ = try await SQLiteAudit.append(audit, on: connection)
            return .created
        }
    }

    func update(
        tenant: TenantID, id: String, fields: LeadFields, updatedAt: String, audit: AuditRecord
    ) async throws(StoreUnavailable) -> Lead? {
        let tenant = tenant.text
        var assignments: [String] = []
        var binds: [SQLiteData] = []
        func assign(_ column: String, _ value: SQLiteData) {
            assignments.append("\(column) = ?")
            binds.append(value)
        }
        if case .set(let value) = fields.name { assign("name", .text(value)) }
        if case .set(let value) = fields.email { assign("email", .text(value)) }
        if case .set(let value) = fields.phone { assign("phone", Self.text(value)) }
        if case .set(let value) = fields.company { assign("company", Self.text(value)) }
        if case .set(let value) = fields.status { assign("status", .text(value)) }
        if case .set(let value) = fields.notes { assign("notes", Self.text(value)) }
        assign("updated_at", .text(updatedAt))
        let sql = "UPDATE leads SET \(assignments.joined(separator: ", ")) WHERE tenant_id = ? AND id = ? RETURNING \(Self.columns)"
        let allBinds = binds + [.text(tenant), .text(id)]
        return try await transaction { connection -> Lead? in
            let lead = try await connection.query(sql, allBinds).compactMap(Self.lead).first
            if lead != nil { _ = try await SQLiteAudit.append(audit, on: connection) }
            return lead
        }
    }

    func delete(tenant: TenantID, id: String, audit: AuditRecord) async throws(StoreUnavailable) -> Bool {
        let tenant = tenant.text
        return try await transaction { connection -> Bool in
            let deleted = !(try await connection.query(
                "DELETE FROM leads WHERE tenant_id = ? AND id = ? RETURNING id", [.text(tenant), .text(id)]
            ).isEmpty)
            if deleted { _ = try await SQLiteAudit.append(audit, on: connection) }
            return deleted
        }
    }
}

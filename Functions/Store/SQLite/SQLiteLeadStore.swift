import Foundation
import Logging
import NIOPosix
import SQLiteNIO

/// Leads and the audit log in an embedded SQLite file (the development default). One connection
/// behind an actor: SQLite has one writer anyway, and the connection's own thread pool keeps I/O
/// off event loops. Every use of the connection takes a FIFO turn (`exclusive`), so a transaction
/// never interleaves with another request's statements; writes run in `BEGIN IMMEDIATE`
/// transactions, which also order writers of other processes on the same file.
actor SQLiteLeadStore: LeadStore {
    private let connection: SQLiteConnection
    let deadline: Duration
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    private init(connection: SQLiteConnection, deadline: Duration) {
        self.connection = connection
        self.deadline = deadline
    }

    deinit {
        // sqlite-nio traps when a connection is released unclosed; the pending close keeps it alive until done.
        _ = connection.close()
    }

    /// Opens (creating the folder and file) and migrates.
    static func open(path: String, logger: Logger, deadline: Duration = .seconds(3)) async throws -> SQLiteLeadStore {
        if path != ":memory:" {
            try FileManager.default.createDirectory(
                at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        }
        let connection = try await SQLiteConnection.open(storage: path == ":memory:" ? .memory : .file(path: path), logger: logger)
        _ = try await connection.query("PRAGMA journal_mode = WAL", [])
        _ = try await connection.query("PRAGMA busy_timeout = 2000", [])
        _ = try await connection.query("PRAGMA foreign_keys = ON", [])
        let store = SQLiteLeadStore(connection: connection, deadline: deadline)
        _ = try await store.migrate()
        return store
    }

    private func acquire() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }

    /// Runs `body` with the connection to itself (FIFO).
    func exclusive<T: Sendable>(_ body: @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body(connection)
    }

    /// `body` inside `BEGIN IMMEDIATE … COMMIT` (rolled back when it throws), against the deadline.
    func transaction<T: Sendable>(
        _ body: @escaping @Sendable (SQLiteConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        // Never cancelled from outside: the ROLLBACK below always runs, so a stall past the deadline
        // cannot leave the connection inside BEGIN IMMEDIATE holding the write lock.
        try await withTransactionDeadline(deadline) { gate in
            try await self.exclusive { connection in
                try await Self.beginImmediate(connection, until: gate.end)
                do {
                    let result = try await body(connection)
                    try gate.beginCommit()
                    _ = try await connection.query("COMMIT", [])
                    return result
                } catch {
                    _ = try? await connection.query("ROLLBACK", [])
                    throw error
                }
            }
        }
    }

    /// `BEGIN IMMEDIATE`, retried while another connection holds the write lock: SQLite sometimes
    /// answers busy at once instead of calling the busy handler (seen with several connections on
    /// one file starting writes in the same millisecond), so `busy_timeout` alone is not enough.
    static func beginImmediate(_ connection: SQLiteConnection, until end: ContinuousClock.Instant) async throws {
        var pause = Duration.milliseconds(2)
        while true {
            do {
                _ = try await connection.query("BEGIN IMMEDIATE", [])
                return
            } catch let error as SQLiteError where error.reason == .busy && ContinuousClock.now + pause < end {
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(50))
            }
        }
    }

    /// The versions recorded in `schema_migrations`.
    func appliedVersions() async throws(StoreUnavailable) -> Set<Int> {
        Set(try await run("SELECT version FROM schema_migrations", []).compactMap { $0.column("version")?.integer })
    }

    /// Applies `Migrations.sqlite` in one immediate transaction; returns the versions it ran.
    func migrate() async throws -> [Int] {
        try await exclusive { connection in try await Self.migrate(connection) }
    }

    private static func migrate(_ connection: SQLiteConnection) async throws -> [Int] {
        _ = try await connection.query("BEGIN IMMEDIATE", [])
        do {
            _ = try await connection.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
                [])
            let applied = Set(try await connection.query("SELECT version FROM schema_migrations", []).compactMap {
                $0.column("version")?.integer
            })
            var ran: [Int] = []
            for migration in Migrations.sqlite where !applied.contains(migration.version) {
                for statement in migration.statements { _ = try await connection.query(statement, []) }
                _ = try await connection.query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [.integer(migration.version), .text(migration.name), .text(Timestamps.now())])
                ran.append(migration.version)
            }
            _ = try await connection.query("COMMIT", [])
            return ran
        } catch {
            _ = try? await connection.query("ROLLBACK", [])
            throw error
        }
    }

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

    func run(_ sql: String, _ binds: [SQLiteData]) async throws(StoreUnavailable) -> [SQLiteRow] {
        try await withDeadline(deadline) { try await self.exclusive { try await $0.query(sql, binds) } }
    }

    static func text(_ value: String?) -> SQLiteData { value.map { .text($0) } ?? .null }

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

    func permissionRows() async throws(StoreUnavailable) -> [(String, Bool, Bool)] {
        try await run("SELECT permission, read_only, step_up FROM module_permissions", []).compactMap { row in
            guard let name = row.column("permission")?.string, let readOnly = row.column("read_only")?.integer,
                let stepUp = row.column("step_up")?.integer
            else { return nil }
            return (name, readOnly != 0, stepUp != 0)
        }
    }

    /// Ready means able to take writes: the write lock is taken and given back at once (a
    /// connection stuck in a transaction, or another process holding the lock past `busy_timeout`,
    /// is not ready).
    func ping() async -> Bool {
        (try? await transaction { connection in
            try await connection.query("SELECT 1 AS one", []).first?.column("one")?.integer
        }) == 1
    }
}

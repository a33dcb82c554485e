import CoreMetrics
import Foundation
import FunctionRuntime
import Logging
import NIOSSL
import PostgresNIO
import ServiceLifecycle

/// `postgres://user:password@host:port/database?sslmode=disable|prefer|require|verify-ca|verify-full`
/// `[&sslrootcert=PATH|system]`, as libpq reads them: `require` encrypts without verifying,
/// `verify-ca` verifies the chain, `verify-full` the chain and the host name; the trust roots are
/// `sslrootcert`, else `TLS_CA_FILE` (`caFile`), else the system store.
enum PostgresURL {
    static func configuration(_ text: String, caFile: String? = nil) throws(StoreUnavailable) -> PostgresClient.Configuration {
        guard let components = URLComponents(string: text), components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty, let user = components.user
        else { throw StoreUnavailable(description: "DATABASE_URL must look like postgres://USER:PASSWORD@HOST:PORT/DATABASE") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        let mode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch mode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require":
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none  // libpq's `require` encrypts without verifying
            tls = .require(configuration)
        case "verify-ca", "verify-full":
            var configuration = TLSConfiguration.makeClientConfiguration()
            let root = components.queryItems?.first(where: { $0.name == "sslrootcert" })?.value ?? caFile
            if let root, !root.isEmpty, root != "system" {
                guard FileManager.default.isReadableFile(atPath: root) else {
                    throw StoreUnavailable(description: "DATABASE_URL sslrootcert / TLS_CA_FILE '\(root)' is not a readable file")
                }
                configuration.trustRoots = .file(root)
            }
            configuration.certificateVerification = mode == "verify-full" ? .fullVerification : .noHostnameVerification
            tls = .require(configuration)
        default: throw StoreUnavailable(description: "DATABASE_URL sslmode '\(mode)' is not supported")
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user.removingPercentEncoding ?? user,
            password: components.password?.removingPercentEncoding, database: database.isEmpty ? nil : database, tls: tls)
        configuration.options.connectTimeout = .seconds(3)
        configuration.options.maximumConnections = 20
        configuration.options.additionalStartupParameters = [("application_name", "fnhost"), ("statement_timeout", "5000")]
        return configuration
    }
}

/// Leads on PostgreSQL through a `PostgresClient` pool (a `Service`). Values are always bound
/// through interpolation; every call races a deadline.
struct PostgresLeadStore: LeadStore {
    static let columns = """
        id::text, name, email, phone, company, status, notes, created_by, \
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), \
        to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        """

    let client: PostgresClient
    let logger: Logger
    let deadline: Duration
    private let crossTenantUses: [DatabaseScope.Reason: CoreMetrics.Counter]

    init(client: PostgresClient, logger: Logger, deadline: Duration = .seconds(3), metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.client = client
        self.logger = logger
        self.deadline = deadline
        crossTenantUses = DatabaseScope.counters(metrics)
    }

    typealias Row = (String, String, String, String?, String?, String, String?, String, String, String)

    /// A write transaction that cannot outlive its answer: PostgreSQL itself ends any statement or
    /// lock wait past the remaining deadline (`SET LOCAL statement_timeout`, `lock_timeout`), and
    /// the transaction commits only if the caller is still waiting (`TransactionDeadline`). The same
    /// first statement sets the row-level-security scope (`app.tenant_id` or `app.cross_tenant`,
    /// transaction-local, so a pooled connection never carries it to the next caller): this is the
    /// one entry point for tenant work.
    func transaction<T: Sendable>(
        _ scope: DatabaseScope, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        if case .crossTenant(let reason) = scope { crossTenantUses[reason]?.increment() }
        let span = Tracing.start("postgres transaction", attributes: [("db.system", .string("postgresql"))])
        do {
            let value = try await scopedTransaction(scope, body)
            span?.end()
            return value
        } catch {
            span?.end(failed: true)
            throw error
        }
    }

    private func scopedTransaction<T: Sendable>(
        _ scope: DatabaseScope, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        try await withTransactionDeadline(deadline, logger: logger) { [client, logger] gate in
            try await client.withTransaction(logger: logger) { connection in
                let limit = String(gate.remainingMilliseconds)
                _ = try await connection.query(
                    """
                    SELECT set_config('statement_timeout', \(limit), true), set_config('lock_timeout', \(limit), true),
                           set_config('app.tenant_id', \(scope.tenantSetting), true), set_config('app.cross_tenant', \(scope.crossTenantSetting), true)
                    """, logger: logger)
                let result = try await body(connection)
                try gate.beginCommit()
                return result
            }
        }
    }

    /// A read in its own short transaction with the row-level-security scope set (for reads off the
    /// hot path; the hot ones set it inside their SQL functions, in one round trip).
    func read<T: Sendable>(
        _ scope: DatabaseScope, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        try await transaction(scope, body)
    }

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
        static let sql = "SELECT * FROM fnhost_leads_page($1, $2, NULL, NULL)"
        typealias Row = PostgresLeadStore.Row
        let tenant: String
        var cursor: LeadCursor? { nil }
        let limit: Int

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    struct NextPage: LeadPageStatement {
        static let sql = "SELECT * FROM fnhost_leads_page($1, $4, $2::timestamptz, $3::uuid)"
        typealias Row = PostgresLeadStore.Row
        let tenant: String
        let cursor: LeadCursor?
        let limit: Int

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// The listing as JSON built by PostgreSQL (`row_to_json` of the API columns, timestamps already
    /// in their text form) plus the position for the cursor, by `fnhost_leads_json`.
    typealias JSONRow = (String, String, String)

    struct FirstPageJSON: LeadPageStatement {
        static let sql = "SELECT * FROM fnhost_leads_json($1, $2, NULL, NULL)"
        typealias Row = PostgresLeadStore.JSONRow
        let tenant: String
        var cursor: LeadCursor? { nil }
        let limit: Int

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    struct NextPageJSON: LeadPageStatement {
        static let sql = "SELECT * FROM fnhost_leads_json($1, $4, $2::timestamptz, $3::uuid)"
        typealias Row = PostgresLeadStore.JSONRow
        let tenant: String
        let cursor: LeadCursor?
        let limit: Int

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    func listJSON(tenant: TenantID, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [LeadJSON] {
        let tenant = tenant.text
        let span = Tracing.start("postgres fnhost_leads_json", attributes: [("db.system", .string("postgresql"))])
        defer { span?.end() }
        return try await withDeadline(deadline) { [client, logger] in
            var page: [LeadJSON] = []
            page.reserveCapacity(limit)
            if let cursor {
                for try await row in try await client.execute(NextPageJSON(tenant: tenant, cursor: cursor, limit: limit), logger: logger) {
                    page.append(LeadJSON(json: row.0, cursor: LeadCursor(createdAt: row.1, id: row.2)))
                }
            } else {
                for try await row in try await client.execute(FirstPageJSON(tenant: tenant, limit: limit), logger: logger) {
                    page.append(LeadJSON(json: row.0, cursor: LeadCursor(createdAt: row.1, id: row.2)))
                }
            }
            return page
        }
    }

    struct ByID: PostgresPreparedStatement {
        static let sql = "SELECT * FROM fnhost_lead($1, $2::uuid)"
        typealias Row = PostgresLeadStore.Row
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
        return try await withDeadline(deadline) { [client, logger] in
            if let cursor {
                return try await Self.collect(try await client.execute(NextPage(tenant: tenant, cursor: cursor, limit: limit), logger: logger))
            }
            return try await Self.collect(try await client.execute(FirstPage(tenant: tenant, limit: limit), logger: logger))
        }
    }

    func get(tenant: TenantID, id: String) async throws(StoreUnavailable) -> Lead? {
        let tenant = tenant.text
        return try await withDeadline(deadline) { [client, logger] in
            try await Self.collect(try await client.execute(ByID(tenant: tenant, id: id), logger: logger)).first
        }
    }

    func create(
        tenant: TenantID, lead: Lead, audit: AuditRecord, idempotency: CreateIdempotency?
    ) async throws(StoreUnavailable) -> CreateOutcome {
        let tenant = tenant.text
        return try await transaction(.tenant(tenant)) { [logger] connection -> CreateOutcome in
            if let idempotency {
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
            }
            try await connection.query(
                """
                INSERT INTO leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at)
                VALUES (\(tenant), \(lead.id)::uuid, \(lead.name), \(lead.email), \(lead.phone), \(lead.company), \(lead.status),
                        \(lead.notes), \(lead.createdBy), \(lead.createdAt)::timestamptz, \(lead.updatedAt)::timestamptz)
                """, logger: logger)
            _ = try await PostgresAudit.append(audit, on: connection, logger: logger)
            return .created
        }
    }

    func update(
        tenant: TenantID, id: String, fields: LeadFields, updatedAt: String, audit: AuditRecord
    ) async throws(StoreUnavailable) -> Lead? {
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
        return try await transaction(.tenant(tenant)) { [logger] connection -> Lead? in
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
            if updated != nil { _ = try await PostgresAudit.append(audit, on: connection, logger: logger) }
            return updated
        }
    }

    func delete(tenant: TenantID, id: String, audit: AuditRecord) async throws(StoreUnavailable) -> Bool {
        let tenant = tenant.text
        return try await transaction(.tenant(tenant)) { [logger] connection -> Bool in
            let rows = try await connection.query(
                "DELETE FROM leads WHERE tenant_id = \(tenant) AND id = \(id)::uuid RETURNING id::text", logger: logger)
            var deleted = false
            for try await _ in rows.decode(String.self) { deleted = true }
            if deleted { _ = try await PostgresAudit.append(audit, on: connection, logger: logger) }
            return deleted
        }
    }

    func permissionRows() async throws(StoreUnavailable) -> [(String, Bool, Bool)] {
        try await withDeadline(deadline) { [client, logger] in
            var rows: [(String, Bool, Bool)] = []
            for try await row in try await client.query(
                "SELECT permission, read_only, step_up FROM module_permissions", logger: logger
            ).decode((String, Bool, Bool).self) {
                rows.append(row)
            }
            return rows
        }
    }

    func ping() async -> Bool {
        (try? await withDeadline(.seconds(2)) { [client, logger] in
            var ok = false
            for try await value in try await client.query("SELECT 1", logger: logger).decode(Int32.self) { ok = value == 1 }
            return ok
        }) ?? false
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

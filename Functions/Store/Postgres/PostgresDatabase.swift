import CoreMetrics
import Foundation
import FunctionRuntime
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import ServiceLifecycle

/// `postgres://user:password@host:port/database?sslmode=disable|prefer|require|verify-ca|verify-full`
/// `[&sslrootcert=PATH|system]`, as libpq reads them: `require` encrypts without verifying,
/// `verify-ca` verifies the chain, `verify-full` the chain and the host name; the trust roots are
/// `sslrootcert`, else `TLS_CA_FILE` (`caFile`), else the system store. Behind a pooler (`DatabasePooler`) the
/// only startup parameter sent is `application_name`.
struct PostgresURL: Sendable {
    let host: String
    let port: Int
    let username: String
    let password: String?
    let database: String?
    let tls: TLS
    let pooler: DatabasePooler

    enum TLS: Sendable {
        case disable
        case prefer(TLSConfiguration)
        case require(TLSConfiguration)
    }

    init(_ text: String, caFile: String? = nil, pooler: DatabasePooler = .none) throws(StoreUnavailable) {
        guard let components = URLComponents(string: text), components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty, let user = components.user
        else { throw StoreUnavailable(description: "DATABASE_URL must look like postgres://USER:PASSWORD@HOST:PORT/DATABASE") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        let mode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer"
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
        self.host = host
        port = components.port ?? 5432
        username = user.removingPercentEncoding ?? user
        password = components.password?.removingPercentEncoding
        self.database = database.isEmpty ? nil : database
        self.pooler = pooler
    }

    static func configuration(
        _ text: String, caFile: String? = nil, pooler: DatabasePooler = .none
    ) throws(StoreUnavailable) -> PostgresClient.Configuration {
        try PostgresURL(text, caFile: caFile, pooler: pooler).client
    }

    /// No startup parameter a pooler refuses: PgBouncer accepts `application_name` and answers anything else
    /// (`statement_timeout` included) with 08P01 "unsupported startup parameter", so no connection would open.
    var startupParameters: [(String, String)] {
        pooler == .none ? [("application_name", "fnhost"), ("statement_timeout", "5000")] : [("application_name", "fnhost")]
    }

    var client: PostgresClient.Configuration {
        let clientTLS: PostgresClient.Configuration.TLS
        switch tls {
        case .disable: clientTLS = .disable
        case .prefer(let configuration): clientTLS = .prefer(configuration)
        case .require(let configuration): clientTLS = .require(configuration)
        }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database, tls: clientTLS)
        configuration.options.connectTimeout = .seconds(3)
        configuration.options.maximumConnections = 20
        configuration.options.additionalStartupParameters = startupParameters
        return configuration
    }

    /// Why no connection opens, in PostgreSQL's (or the pooler's) own words: one connection made directly,
    /// outside the pool, whose error is described (`PostgresStartupFailure`); nil when it opens and answers.
    func probe(logger: Logger) async -> String? {
        do {
            let connectionTLS: PostgresConnection.Configuration.TLS
            switch tls {
            case .disable: connectionTLS = .disable
            case .prefer(let configuration): connectionTLS = .prefer(try NIOSSLContext(configuration: configuration))
            case .require(let configuration): connectionTLS = .require(try NIOSSLContext(configuration: configuration))
            }
            var configuration = PostgresConnection.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: connectionTLS)
            configuration.options.connectTimeout = .seconds(3)
            configuration.options.additionalStartupParameters = startupParameters
            let connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: 0, logger: logger
            ).get()
            defer { Task { try? await connection.close() } }
            _ = try await connection.query("SELECT 1", logger: logger)
            return nil
        } catch {
            return PostgresStartupFailure.describe(error, pooler: pooler)
        }
    }
}

/// A failure to connect, for the operator: PostgreSQL's SQLSTATE and message (its own words: a refused password,
/// a missing database, a pooler refusing a startup parameter) with a hint where the cause is known; otherwise the
/// client's error code and the underlying error (connection refused, TLS). Never the password: PostgreSQL does
/// not echo it, and the URL is not part of it.
enum PostgresStartupFailure {
    static func describe(_ error: any Error, pooler: DatabasePooler) -> String {
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo {
            let state = info[.sqlState] ?? ""
            var text = "SQLSTATE \(state): \(info[.message] ?? "")"
            if state.utf8.elementsEqual("08P01".utf8), pooler == .none,
                info[.message].map({ $0.utf8.starts(with: "unsupported startup parameter".utf8) }) == true
            {
                text += " (a pooler answers this: set DATABASE_POOLER=transaction, or session)"
            }
            return text
        }
        return "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
    }
}

/// The module's PostgreSQL database: the `PostgresClient` pool (a `Service`), the transaction
/// entry points — `withTenantTransaction` for tenant work, `withCrossTenantTransaction` for the
/// explicit cross-tenant paths, `transaction(scope)` underneath (an audit chain's scope is its
/// tenant, or cross-tenant for the platform chain) — and the deadline every call races. The
/// repositories are extensions in their own files: leads (`PostgresLeads.swift`), the audit log
/// (`PostgresAuditStore.swift`), the outbox and revocations (`PostgresOutboxStore.swift`), timers
/// (`TimerStore.swift`). Values are always bound through interpolation.
struct PostgresDatabase: Sendable {
    let pool: PostgresPool
    /// The client of the event loop the caller runs on (`PostgresPool`).
    var client: PostgresClient { pool.client }
    /// Prepared or unnamed statements (`DATABASE_POOLER`), as the pool's.
    var statements: StatementMode { pool.statements }
    let logger: Logger
    let deadline: Duration
    private let crossTenantUses: [DatabaseScope.Reason: CoreMetrics.Counter]

    init(pool: PostgresPool, logger: Logger, deadline: Duration = .seconds(3), metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.pool = pool
        self.logger = logger
        self.deadline = deadline
        crossTenantUses = DatabaseScope.counters(metrics)
    }

    /// Over one client the caller runs (tests, command-line runs).
    init(
        client: PostgresClient, statements: StatementMode = .prepared, logger: Logger, deadline: Duration = .seconds(3),
        metrics: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.init(pool: PostgresPool(client: client, statements: statements, logger: logger), logger: logger, deadline: deadline, metrics: metrics)
    }

    /// A write transaction that cannot outlive its answer: PostgreSQL itself ends any statement or
    /// lock wait past the remaining deadline (`SET LOCAL statement_timeout`, `lock_timeout`), and
    /// the transaction commits only if the caller is still waiting (`TransactionDeadline`). The same
    /// first statement sets the row-level-security scope (`app.tenant_id`, and `app.cross_tenant` off;
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
        try await withTransactionDeadline(deadline, logger: logger) { [client, statements, logger] gate in
            try await client.withTransaction(logger: logger) { connection in
                // A connection whose server turned read-only or went away is discarded (`losesItsServer`), not pooled.
                try await connection.discarding({
                    _ = try await connection.rows(
                        TransactionSettings(limit: String(gate.remainingMilliseconds), scope: scope), statements, logger: logger)
                    let result = try await body(connection)
                    try gate.beginCommit()
                    return result
                }, logger: logger)
            }
        }
    }

    /// The first statement of every transaction (prepared: parsed and planned once per connection; unnamed behind
    /// a transaction pooler):
    /// the remaining deadline as `statement_timeout`/`lock_timeout`, and the row-level-security scope.
    struct TransactionSettings: PostgresPreparedStatement {
        static let name = "fnhost.TransactionSettings"
        static let sql = """
            SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true),
                   set_config('app.tenant_id', $2, true), set_config('app.cross_tenant', 'off', true)
            """
        typealias Row = Void
        let limit: String
        let scope: DatabaseScope

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 2)
            bindings.append(limit)
            bindings.append(scope.tenantSetting)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws {}
    }

    /// A read in its own short transaction with the row-level-security scope set (for reads off the
    /// hot path; the hot ones set it inside their SQL functions, in one round trip).
    func read<T: Sendable>(
        _ scope: DatabaseScope, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        try await transaction(scope, body)
    }

    /// Tenant work, the one entry point for it: every statement of `body` sees and writes the rows
    /// of `tenant` only (row-level security), and the transaction is bounded by the deadline.
    func withTenantTransaction<T: Sendable>(
        _ tenant: TenantID, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        try await transaction(.tenant(tenant.text), body)
    }

    /// One of the explicit cross-tenant paths (`DatabaseScope.Reason`), counted by reason: `body` calls the schema
    /// owner's job function for it (migration 17); the transaction itself sees no tenant.
    func withCrossTenantTransaction<T: Sendable>(
        _ reason: DatabaseScope.Reason, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        try await transaction(.crossTenant(reason), body)
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

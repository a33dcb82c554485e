import Foundation
import FunctionRuntime
import HTTPTypes
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Where the database's schema stands against this binary's migrations (docs/data.md), and what
/// that means for requests: behind (with `DATABASE_MIGRATIONS=manual`, before `fnhost migrate`)
/// → every data request and `/health/ready` (reason `schema`) answer 503 naming `fnhost migrate`;
/// ahead (a newer binary migrated, this one was rolled back) → writes are refused with a 503 so
/// an old binary never writes rows a newer schema does not expect; reads still serve.
final class SchemaGate: Sendable {
    enum Status: Sendable, Equatable {
        /// Not known yet (the database has not answered).
        case unknown
        case current
        case behind(pending: [Int])
        case ahead(version: Int)
    }

    let latest: Int
    private let state = Mutex<Status>(.unknown)

    init(latest: Int) {
        self.latest = latest
    }

    var status: Status { state.withLock { $0 } }

    /// Compares the applied versions with this binary's.
    func update(applied: Set<Int>, known: [Int]) {
        let pending = known.filter { !applied.contains($0) }
        let newest = applied.max() ?? 0
        let status: Status = newest > latest ? .ahead(version: newest) : pending.isEmpty ? .current : .behind(pending: pending)
        state.withLock { $0 = status }
    }

    func check(write: Bool) throws(FunctionError) {
        switch status {
        case .behind(let pending):
            throw FunctionError.serviceUnavailable(
                "the database schema is behind this binary (pending migrations \(pending.map(String.init).joined(separator: ", "))); an operator must run `fnhost migrate`")
        case .ahead(let version) where write:
            throw FunctionError.serviceUnavailable(
                "the database schema (version \(version)) is newer than this binary (\(latest)); writes are refused until this instance is upgraded")
        case .unknown, .current, .ahead:
            return
        }
    }

    /// `function` behind the gate: reads (GET, HEAD) pass an ahead schema, writes do not.
    func guarding(_ function: some HTTPFunction) -> some HTTPFunction {
        SchemaGated(gate: self, inner: function)
    }

    func guarding(_ function: some TimerFunction) -> some TimerFunction {
        SchemaGatedTimer(gate: self, inner: function)
    }
}

private struct SchemaGated<Inner: HTTPFunction>: HTTPFunction {
    let gate: SchemaGate
    let inner: Inner

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        try gate.check(write: request.method != .get && request.method != .head)
        return try await inner.handle(request)
    }
}

/// Timers write (the outbox, the verifier's outcome): skipped while the schema is behind or ahead.
private struct SchemaGatedTimer<Inner: TimerFunction>: TimerFunction {
    let gate: SchemaGate
    let inner: Inner

    func run(_ timer: TimerInfo, context: TimerContext) async throws {
        try gate.check(write: true)
        try await inner.run(timer, context: context)
    }
}

/// `/health/ready`'s `schema` check: not ready while the schema is behind the binary.
struct SchemaReadiness: ReadinessCheck {
    let gate: SchemaGate
    var name: String { "schema" }

    func isReady() async -> Bool {
        if case .behind = gate.status { return false }
        return true
    }
}

/// Re-reads `schema_migrations` every 15 s, so `fnhost migrate` (or a newer instance migrating)
/// takes effect without a restart.
struct SchemaWatcher: Service {
    let gate: SchemaGate
    let read: @Sendable () async throws -> Set<Int>
    let known: [Int]
    let logger: Logger
    var interval: Duration = .seconds(15)

    func run() async throws {
        var reported = gate.status
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            guard !Task.isShuttingDownGracefully, let applied = try? await withDeadline(.seconds(5), read) else { continue }
            gate.update(applied: applied, known: known)
            let now = gate.status
            if now != reported {
                logger.notice("database schema status changed", metadata: ["status": .string("\(now)")])
                reported = now
            }
        }
    }
}

extension PostgresMigrator {
    /// The versions recorded in `schema_migrations` (none when the table does not exist yet).
    static func applied(_ client: PostgresClient, logger: Logger) async throws -> Set<Int> {
        var applied: Set<Int> = []
        do {
            for try await version in try await client.query("SELECT version FROM schema_migrations", logger: logger).decode(Int32.self) {
                applied.insert(Int(version))
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42P01" {
            return []
        }
        return applied
    }
}

extension PostgresMigrator {
    /// What the runtime role may do (docs/data.md), and nothing more: no DDL anywhere (it owns nothing),
    /// `audit_events` and the tree and checkpoints append-only by privilege. Re-applied after every
    /// migration run, so a new table never leaves the runtime role without access.
    static let runtimeGrants: [(tables: [String], privileges: String)] = [
        (["leads"], "SELECT, INSERT, UPDATE, DELETE"),
        (["email_outbox", "timer_status", "audit_chain_heads", "audit_verifier_positions"], "SELECT, INSERT, UPDATE"),
        (["lead_requests", "timer_runs", "audit_events", "audit_tree_nodes", "audit_checkpoints"], "SELECT, INSERT"),
        // Revocations and purges outlive the cache: inserted, never deleted by the runtime (fnhost_prune_expired does).
        (["session_revocations", "rbac_purges"], "SELECT, INSERT"),
        (["module_permissions", "schema_migrations"], "SELECT"),
    ]
    static let runtimeFunctions = [
        "fnhost_leads_json(text, bigint, timestamptz, uuid)", "fnhost_leads_page(text, bigint, timestamptz, uuid)", "fnhost_lead(text, uuid)",
        "fnhost_leads_json_page(text, bigint, timestamptz, uuid)",
        "fnhost_lead_rendered_json(leads)", "fnhost_leads_json_pages(text[], bigint[], text[], text[])",
        "fnhost_audit_append(text, uuid, text, text, text, text, text, text, jsonb, bytea, bytea)",
        "fnhost_create_lead(text, integer, uuid, text, text, text, text, text, text, text, timestamptz, timestamptz, text, uuid, text, text, text, text, text, text, jsonb, bytea, bytea)",
        "fnhost_create_leads(integer, jsonb)", "fnhost_prune_expired()", "fnhost_create_leads_each(integer, text[], text[])",
        // Migration 17: the cross-tenant jobs, run as the schema owner.
        "fnhost_outbox_claim(text, timestamptz, timestamptz, integer)", "fnhost_outbox_backlog()", "fnhost_revocations_in_force(bigint)",
        "fnhost_purges_in_force(bigint)", "fnhost_audit_chain_ids()", "fnhost_audit_chains_with_events()", "fnhost_audit_verifier_positions()",
        "fnhost_audit_events_all(text, timestamptz, timestamptz, text, timestamptz, bigint, text, boolean, integer)",
    ]

    /// `role` as a quoted SQL identifier.
    static func identifier(_ role: String) -> String {
        "\"" + role.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A runtime role that would hold the owner's rows anyway: a member of the migrating role (the `owner_jobs`
    /// policies of migration 17 name the owner, and a policy applies to the members of the role it names), a
    /// superuser, or a role that bypasses row-level security. `fnhost migrate` refuses to grant it.
    struct RuntimeRoleOpensEveryTenant: Error, CustomStringConvertible {
        let role: String
        var description: String {
            "the runtime role \(role) is a member of the migrating role, a superuser or exempt from row-level security: "
                + "every tenant's rows would be open to it; use a role that is none of these (docs/data.md)"
        }
    }

    /// Revokes everything from `role` on the module's tables, then grants exactly `runtimeGrants`.
    /// Nothing happens when `role` is the migrating role itself (one role for both); a role that would hold the
    /// owner's rows anyway is refused (`RuntimeRoleOpensEveryTenant`).
    static func grantRuntime(_ client: PostgresClient, role: String, logger: Logger) async throws {
        // Checked before the transaction, so the refusal reaches the operator as itself.
        var current = "", opensEveryTenant = false
        for try await (name, member, exempt) in try await client.query(
            """
            SELECT current_user::text, coalesce(pg_has_role(r.oid, current_user, 'USAGE'), false), coalesce(r.rolsuper OR r.rolbypassrls, false)
            FROM (SELECT 1) AS one LEFT JOIN pg_roles r ON r.rolname = \(role)::name
            """, logger: logger
        ).decode((String, Bool, Bool).self) {
            current = name
            opensEveryTenant = member || exempt
        }
        guard !current.utf8.elementsEqual(role.utf8) else { return }
        guard !opensEveryTenant else { throw RuntimeRoleOpensEveryTenant(role: role) }
        try await client.withTransaction(logger: logger) { connection in
            let who = identifier(role)
            let everything = runtimeGrants.flatMap(\.tables).joined(separator: ", ")
            _ = try await connection.query(PostgresQuery(unsafeSQL: "GRANT USAGE ON SCHEMA public TO \(who)"), logger: logger)
            _ = try await connection.query(PostgresQuery(unsafeSQL: "REVOKE ALL ON \(everything) FROM \(who)"), logger: logger)
            for grant in runtimeGrants {
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: "GRANT \(grant.privileges) ON \(grant.tables.joined(separator: ", ")) TO \(who)"), logger: logger)
            }
            _ = try await connection.query(
                PostgresQuery(unsafeSQL: "GRANT EXECUTE ON FUNCTION \(runtimeFunctions.joined(separator: ", ")) TO \(who)"), logger: logger)
        }
    }
}

/// The runtime role of a `postgres://USER@…` URL (nil for anything else).
func postgresUser(_ url: String) -> String? {
    guard let components = URLComponents(string: url), components.scheme == "postgres" || components.scheme == "postgresql",
        let user = components.user, !user.isEmpty
    else { return nil }
    return user.removingPercentEncoding ?? user
}

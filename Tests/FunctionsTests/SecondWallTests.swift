import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import PostgresNIO
import Testing

@testable import Functions

extension Functions.PostgresDatabase {
    /// Test only: a tenant query that forgot its `WHERE tenant_id` (the bug the second wall is for).
    func leadNamesWithoutATenantFilter(scope: DatabaseScope) async throws(StoreUnavailable) -> [String] {
        try await read(scope) { [logger] connection in
            var names: [String] = []
            for try await name in try await connection.query("SELECT name FROM leads ORDER BY name", logger: logger).decode(String.self) {
                names.append(name)
            }
            return names
        }
    }
}

/// docs/data.md on a database of its own: migrations as the owner, the module as a runtime role that
/// owns nothing, row-level security forced on every tenant table.
@Suite(.serialized) struct SecondWallTests {
    /// A LOGIN role for the runtime, created by the superuser; its URL on the scratch database.
    static func runtimeRole(_ database: ScratchDatabase) async throws -> (name: String, url: String) {
        let name = "fnhost_rt_" + UUID().uuidString.prefix(8).lowercased()
        let password = "rt-" + UUID().uuidString
        try await ScratchDatabase.superuser(database.adminURL) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: "CREATE ROLE \(name) LOGIN PASSWORD '\(password)'"), logger: ScratchDatabase.logger)
        }
        var components = try #require(URLComponents(string: database.url))
        components.user = name
        components.password = password
        return (name, try #require(components.string))
    }

    static func dropRole(_ name: String, _ database: ScratchDatabase) async {
        try? await ScratchDatabase.superuser(database.adminURL) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: "DROP OWNED BY \(name)"), logger: ScratchDatabase.logger)
        }
    }

    /// Runs `body` on one connection of `url`, with the row-level-security settings given.
    static func asRole(
        _ url: String, tenant: String? = nil, crossTenant: Bool = false, _ body: @escaping @Sendable (PostgresConnection) async throws -> Void
    ) async throws {
        try await StoreSetup.withClient(try PostgresURL.configuration(url), logger: ScratchDatabase.logger) { client in
            try await client.withConnection { connection in
                _ = try await connection.query(
                    "SELECT set_config('app.tenant_id', \(tenant ?? ""), false), set_config('app.cross_tenant', \(crossTenant ? "on" : "off"), false)",
                    logger: ScratchDatabase.logger)
                try await body(connection)
            }
        }
    }

    static func sqlState(_ statement: String, on connection: PostgresConnection) async -> String? {
        do {
            _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: ScratchDatabase.logger)
            return nil
        } catch let error as PSQLError {
            return error.serverInfo?[.sqlState] ?? "?"
        } catch {
            return "?"
        }
    }

    @Test func theRuntimeRoleServesBothTenantsAndCanNeitherRewriteTheLogNorChangeTheSchema() async throws {
        try await ScratchDatabase.with { database in
            let runtime = try await Self.runtimeRole(database)
            defer { Task { await Self.dropRole(runtime.name, database) } }
            // The module migrates at start-up as the owner and grants the runtime role; it then serves as that role.
            try await LeadsHarness.run(databaseURL: runtime.url, extra: ["DATABASE_MIGRATION_URL": database.url]) { host, key, client in
                for tenant in ["wall-a", "wall-b"] {
                    await LeadsHarness.grant(host, tenant: tenant, user: "u-1", ["LEADS_READ", "LEADS_WRITE", "LEADS_DELETE", "AUDIT_READ"])
                }
                let a = try LeadsHarness.token(key, tenant: "wall-a", user: "u-1")
                let b = try LeadsHarness.token(key, tenant: "wall-b", user: "u-1")
                var ids: [String: String] = [:]
                for (tenant, token) in [("wall-a", a), ("wall-b", b)] {
                    let created = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"lead of \#(tenant)","email":"x@y.example"}"#)
                    #expect(created.status == .created, "\(created.body)")
                    ids[tenant] = created.json["id"] as? String
                }
                // Both directions: neither tenant sees, changes or deletes the other's lead.
                for (reader, token, other) in [("wall-a", a, "wall-b"), ("wall-b", b, "wall-a")] {
                    let page = try await client.send(.get, "/api/leads", token: token)
                    let names = (page.json["items"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
                    #expect(names == ["lead of \(reader)"], "\(page.body)")
                    let foreign = try #require(ids[other])
                    #expect(try await client.send(.get, "/api/leads/\(foreign)", token: token).status == .notFound)
                    #expect(try await client.send(.patch, "/api/leads/\(foreign)", token: token, json: #"{"name":"taken"}"#).status == .notFound)
                    let events = try await client.send(.get, "/api/audit", token: token)
                    #expect((events.json["items"] as? [[String: Any]] ?? []).allSatisfy { $0["tenant_id"] as? String == reader })
                }
                #expect(try await client.send(.get, "/health/ready", token: a).status == .ok)
            }

            // As the runtime role, directly: append-only by privilege, no DDL, nothing without a tenant.
            try await Self.asRole(runtime.url, tenant: "wall-a") { connection in
                for statement in [
                    "UPDATE audit_events SET severity = 'critical'", "DELETE FROM audit_events", "TRUNCATE audit_events",
                    "DELETE FROM audit_tree_nodes", "UPDATE audit_checkpoints SET note = ''", "CREATE TABLE sneaky (x int)",
                    "ALTER TABLE leads ADD COLUMN sneaky int", "DROP TRIGGER audit_events_append_only ON audit_events",
                    "ALTER TABLE leads DISABLE ROW LEVEL SECURITY", "DELETE FROM schema_migrations",
                ] {
                    #expect(await Self.sqlState(statement, on: connection) == "42501", "\(statement) must fail by privilege")
                }
                // Writing into another tenant from this tenant's scope fails the policy's check.
                let insert = """
                    INSERT INTO leads (tenant_id, id, name, email, status, created_by, created_at, updated_at)
                    VALUES ('wall-b', gen_random_uuid(), 'planted', 'p@x.example', 'new', 'u', now(), now())
                    """
                #expect(await Self.sqlState(insert, on: connection) == "42501")
            }
            try await Self.asRole(runtime.url) { connection in
                for table in ["leads", "audit_events", "lead_requests", "email_outbox", "audit_chain_heads", "audit_tree_nodes"] {
                    var count = -1
                    for try await value in try await connection.query(
                        PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(table)"), logger: ScratchDatabase.logger
                    ).decode(Int.self) {
                        count = value
                    }
                    #expect(count == 0, "\(table): no tenant set, nothing visible")
                }
            }
        }
    }

    /// The wall holds where the query forgot it: only the scope's rows come back.
    @Test func aQueryWithoutItsTenantFilterSeesOnlyTheScopedTenant() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                for tenant in ["wall-1", "wall-2"] {
                    var lead = newLead(tenant)
                    lead.name = "of \(tenant)"
                    _ = try await store.create(tenant: tenant.tenant, lead: lead, audit: record(tenant), idempotency: nil)
                }
                #expect(try await postgres.leadNamesWithoutATenantFilter(scope: .tenant("wall-1")) == ["of wall-1"])
                #expect(try await postgres.leadNamesWithoutATenantFilter(scope: .tenant("wall-2")) == ["of wall-2"])
                #expect(try await postgres.leadNamesWithoutATenantFilter(scope: .tenant("wall-\u{301}1")).isEmpty)
                #expect(try await postgres.leadNamesWithoutATenantFilter(scope: .noTenant).isEmpty)
                #expect(try await postgres.leadNamesWithoutATenantFilter(scope: .crossTenant(.verifier)).isEmpty, "no cross-tenant path reads leads")
            }
        }
    }

    /// The runtime-role holder of docs/security.md (finding 3): `SET app.cross_tenant = 'on'` once showed every
    /// tenant's leads. No value of any setting the policies read, nor any other setting or role a session of the
    /// runtime role can change, shows two tenants' leads or idempotency records; revocations and purges cannot be
    /// deleted by it (only expired ones, by `fnhost_prune_expired`); the counted cross-tenant reads still work.
    @Test func noSettingTheRuntimeRoleCanChangeOpensTheWall() async throws {
        try await ScratchDatabase.with { database in
            let runtime = try await Self.runtimeRole(database)
            defer { Task { await Self.dropRole(runtime.name, database) } }
            _ = try await StoreSetup.migrate(databaseURL: database.url, runtimeRole: runtime.name, logger: ScratchDatabase.logger)
            try await withAuditStore(runtime.url) { store in
                for tenant in ["wall-1", "wall-2"] {
                    _ = try await store.create(
                        tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant),
                        idempotency: CreateIdempotency(key: "k-\(tenant)", requestHash: "h", response: "{}"))
                    _ = try await OutboxDispatcherTests.seed(store, tenant: tenant, count: 1)
                    let head = try #require(try await store.chainHead(tenant))
                    try await store.saveCheckpoint(tenant, head)
                    let postgres = try #require(store as? Functions.PostgresDatabase)
                    try await postgres.addTreeNodes(tenant, [TreeNode(level: 0, index: 0): [UInt8](repeating: 7, count: 32)])
                    #expect(try await postgres.saveSignedCheckpoint(SignedCheckpoint(chainID: tenant, treeSize: 1, root: [UInt8](repeating: 7, count: 32), note: "n")))
                }
                // The platform chain is a scope of its own (no cross-tenant setting): the runtime role appends to it.
                _ = try await store.append(record(nil, "SUPER_ADMIN_ACTION"))
            }
            let tenants = ["", "wall-1", "wall-2", "*", "%", "on", "platform", "wall-1,wall-2", "wall-1' OR '1'='1", "WALL-1", "wall-1 "]
            let crossValues = ["on", "ON", "true", "1", "yes", "off", ""]
            for tenant in tenants {
                for cross in crossValues {
                    try await Self.asRole(runtime.url) { connection in
                        _ = try await connection.query(
                            "SELECT set_config('app.tenant_id', \(tenant), false), set_config('app.cross_tenant', \(cross), false)",
                            logger: ScratchDatabase.logger)
                        // Migration 17: the audit log and the outbox too (their cross-tenant policies name the schema owner).
                        for (table, key) in [
                            ("leads", "tenant_id"), ("lead_requests", "tenant_id"), ("email_outbox", "tenant_id"), ("audit_events", "chain_id"),
                            ("audit_chain_heads", "chain_id"), ("audit_verifier_positions", "chain_id"), ("audit_tree_nodes", "chain_id"),
                            ("audit_checkpoints", "chain_id"),
                        ] {
                            var seen = -1
                            for try await value in try await connection.query(
                                PostgresQuery(unsafeSQL: "SELECT count(DISTINCT \(key))::int FROM \(table)"), logger: ScratchDatabase.logger
                            ).decode(Int.self) {
                                seen = value
                            }
                            #expect((0...1).contains(seen), "\(table) with app.tenant_id=\(tenant) app.cross_tenant=\(cross): \(seen) tenants")
                        }
                    }
                }
            }
            try await Self.asRole(runtime.url, tenant: "wall-1", crossTenant: true) { connection in
                // Other levers a session has: none is a privilege it holds.
                #expect(await Self.sqlState("SET row_security = off", on: connection) == nil)
                #expect(await Self.sqlState("SELECT count(*) FROM leads", on: connection) == "42501", "row security is not the session's to turn off")
                #expect(await Self.sqlState("RESET row_security", on: connection) == nil)
                #expect(await Self.sqlState("SET ROLE postgres", on: connection) == "42501")
                #expect(await Self.sqlState("SET SESSION AUTHORIZATION postgres", on: connection) == "42501")
                #expect(await Self.sqlState("ALTER TABLE leads NO FORCE ROW LEVEL SECURITY", on: connection) == "42501")
                #expect(await Self.sqlState("CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'", on: connection) == "42501")
                // Revocations and purges outlive the runtime role: inserted, never deleted by it.
                let now = Int64(Date().timeIntervalSince1970)
                for statement in [
                    "INSERT INTO session_revocations (field, tenant_id, record, expires_at) VALUES ('live', 'wall-1', '{}', \(now + 3600))",
                    "INSERT INTO session_revocations (field, tenant_id, record, expires_at) VALUES ('old', 'wall-1', '{}', \(now - 10))",
                    "INSERT INTO rbac_purges (tenant_id, user_id, purged_at, expires_at) VALUES ('wall-1', 'u', \(now), \(now + 3600))",
                    "INSERT INTO rbac_purges (tenant_id, user_id, purged_at, expires_at) VALUES ('wall-1', 'u', \(now - 99), \(now - 10))",
                ] {
                    #expect(await Self.sqlState(statement, on: connection) == nil, "\(statement)")
                }
                for statement in [
                    "DELETE FROM session_revocations", "DELETE FROM rbac_purges", "UPDATE session_revocations SET expires_at = 0",
                    "UPDATE rbac_purges SET purged_at = 0", "TRUNCATE session_revocations",
                ] {
                    #expect(await Self.sqlState(statement, on: connection) == "42501", "\(statement) must fail by privilege")
                }
                #expect(await Self.sqlState("SELECT fnhost_prune_expired()", on: connection) == nil)
                var left: [String] = []
                for try await field in try await connection.query("SELECT field FROM session_revocations ORDER BY field", logger: ScratchDatabase.logger)
                    .decode(String.self)
                {
                    left.append(field)
                }
                #expect(left == ["live"], "only the expired revocation was pruned")
                var purges = -1
                for try await count in try await connection.query("SELECT count(*)::int FROM rbac_purges", logger: ScratchDatabase.logger).decode(Int.self) {
                    purges = count
                }
                #expect(purges == 1, "only the expired purge was pruned")
            }
            // The counted cross-tenant paths still work as the runtime role, through the schema owner's functions: every
            // chain and position for the verifier, the revocations and purges for the sync, the outbox's backlog and
            // claim, a super admin's read of every chain.
            try await withAuditStore(runtime.url) { store in
                #expect(try await store.chainIDs() == ["platform", "wall-1", "wall-2"])
                #expect(Set(try await store.chainIDsWithEvents()) == ["platform", "wall-1", "wall-2"])
                #expect(Set(try await store.checkpoints().keys.map(\.text)) == ["wall-1", "wall-2"])
                let now = Int64(Date().timeIntervalSince1970)
                let purges = try await store.purgeRecords(now: now)
                let revocations = try await store.revocationRecords(now: now)
                #expect(purges.count == 1 && revocations.count == 1)
                #expect(try await store.outboxBacklog().pending == 2)
                let claimed = try await store.claimDue(
                    owner: "wall-test", now: Timestamps.now(), leaseUntil: Timestamps.string(microseconds: Timestamps.nowMicroseconds() + 60_000_000),
                    limit: 10)
                #expect(Set(claimed.map(\.tenantID.text)) == ["wall-1", "wall-2"])
                let every = try await store.auditEvents(AuditQuery(scope: .all, limit: 50))
                #expect(Set(every.map(\.chainID)) == ["platform", "wall-1", "wall-2"])
                let platform = try await store.auditEvents(AuditQuery(scope: .chain(.platform), limit: 50))
                #expect(platform.map(\.eventType) == ["SUPER_ADMIN_ACTION"])
            }
        }
    }

    /// A runtime role that would hold the owner's rows anyway — a member of the migrating role (the `owner_jobs` policies
    /// name the owner, and apply to its members) or one exempt from row-level security — is refused by `fnhost migrate`,
    /// which names the reason; a plain role is granted.
    @Test func aRuntimeRoleThatWouldHoldTheOwnersRowsIsRefused() async throws {
        try await ScratchDatabase.with { database in
            let owner = try #require(postgresUser(database.url))
            for lever in ["GRANT \(owner) TO", "ALTER ROLE"] {
                let runtime = try await Self.runtimeRole(database)
                defer { Task { await Self.dropRole(runtime.name, database) } }
                let statement = lever == "ALTER ROLE" ? "ALTER ROLE \(runtime.name) BYPASSRLS" : "\(lever) \(runtime.name)"
                try await ScratchDatabase.superuser(database.adminURL) { client in
                    _ = try await client.query(PostgresQuery(unsafeSQL: statement), logger: ScratchDatabase.logger)
                }
                do {
                    _ = try await StoreSetup.migrate(databaseURL: database.url, runtimeRole: runtime.name, logger: ScratchDatabase.logger)
                    Issue.record("\(statement): granted")
                } catch {
                    #expect(String(describing: error).contains("every tenant's rows would be open"), "\(statement): \(error)")
                }
            }
            let plain = try await Self.runtimeRole(database)
            defer { Task { await Self.dropRole(plain.name, database) } }
            _ = try await StoreSetup.migrate(databaseURL: database.url, runtimeRole: plain.name, logger: ScratchDatabase.logger)
        }
    }

    /// `fnhost migrate` with an owner URL grants the runtime role; re-running it is harmless.
    @Test func migrateAsTheOwnerGrantsTheRuntimeRoleEveryTime() async throws {
        try await ScratchDatabase.with { database in
            let runtime = try await Self.runtimeRole(database)
            defer { Task { await Self.dropRole(runtime.name, database) } }
            #expect(try await StoreSetup.migrate(databaseURL: database.url, runtimeRole: runtime.name, logger: ScratchDatabase.logger).count == Migrations.postgres.count)
            #expect(try await StoreSetup.migrate(databaseURL: database.url, runtimeRole: runtime.name, logger: ScratchDatabase.logger).isEmpty)
            try await Self.asRole(runtime.url, tenant: "t-grant") { connection in
                #expect(await Self.sqlState("SELECT * FROM fnhost_leads_json('t-grant', 1, NULL, NULL)", on: connection) == nil)
                #expect(await Self.sqlState("SELECT count(*) FROM module_permissions", on: connection) == nil)
                #expect(await Self.sqlState("INSERT INTO timer_runs (function, scheduled_at, claimed_by) VALUES ('F', now(), 'x')", on: connection) == nil)
                #expect(await Self.sqlState("DELETE FROM timer_runs", on: connection) == "42501")
                #expect(await Self.sqlState("INSERT INTO module_permissions (permission, read_only, step_up) VALUES ('X', true, false)", on: connection) == "42501")
            }
        }
    }
}

import CoreMetrics
import Foundation
import TestSupport
import FunctionRuntime
import Logging
import PostgresNIO
import Prometheus
import Testing

@testable import Functions

/// A database of its own for one test (tampering must not break chains other tests verify),
/// created through the superuser URL that `scripts/with-services.sh` exports.
struct ScratchDatabase: Sendable {
    let name: String
    let url: String
    let adminURL: String

    static let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }

    static func adminURL() throws -> String { try TestServices.postgresAdminURL() }

    /// Creates the database (owned by the application role), runs `body`, drops it.
    static func with<T: Sendable>(_ body: @Sendable (ScratchDatabase) async throws -> T) async throws -> T {
        let app = try Backend.postgres.databaseURL()
        let admin = try adminURL()
        let name = "audit_" + UUID().uuidString.prefix(8).lowercased()
        func renamed(_ url: String) -> String {
            var components = URLComponents(string: url)
            components?.path = "/" + name
            return components?.string ?? url
        }
        try await superuser(admin) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name) OWNER fnhost"), logger: logger)
        }
        let database = ScratchDatabase(name: name, url: renamed(app), adminURL: renamed(admin))
        do {
            let result = try await body(database)
            try? await superuser(admin) { client in
                _ = try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: logger)
            }
            return result
        } catch {
            try? await superuser(admin) { client in
                _ = try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: logger)
            }
            throw error
        }
    }

    static func superuser(_ url: String, _ body: @Sendable (PostgresClient) async throws -> Void) async throws {
        let client = PostgresClient(configuration: try PostgresURL.configuration(url), backgroundLogger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await body(client)
        }
    }

    /// Runs SQL as the superuser with triggers off (`session_replication_role = replica`): how an
    /// attacker with database access would edit the log behind the application's back.
    func tamper(_ statements: [String]) async throws {
        try await Self.superuser(adminURL) { client in
            try await client.withConnection { connection in
                _ = try await connection.query("SET session_replication_role = replica", logger: Self.logger)
                for statement in statements {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: Self.logger)
                }
            }
        }
    }
}

/// Runs `body` with a migrated store on `url` (a pooled Postgres client, or a SQLite file).
/// The store on `url`, migrated. `deadline`: generous by default (these tests are about what is
/// stored); outage tests pass the module's own.
func withAuditStore<T: Sendable>(
    _ url: String, deadline: Duration = .seconds(60), _ body: @escaping @Sendable (any ModuleStore) async throws -> T
) async throws -> T {
    if url.hasPrefix("sqlite:") {
        let store = try await SQLiteDatabase.open(path: String(url.dropFirst("sqlite:".count)), logger: ScratchDatabase.logger, deadline: .seconds(30))
        return try await body(store)
    }
    let client = PostgresClient(
        configuration: try PostgresURL.configuration(url), eventLoopGroup: SpreadEventLoopGroup(base: .singleton),
        backgroundLogger: ScratchDatabase.logger)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            await client.run()
            return nil
        }
        defer { group.cancelAll() }
        _ = try await PostgresMigrator.migrate(client, logger: ScratchDatabase.logger)
        // A generous deadline: 400 concurrent transactions queue for 20 connections on a loaded CI machine.
        return try await body(Functions.PostgresDatabase(client: client, logger: ScratchDatabase.logger, deadline: deadline))
    }
}

func record(_ tenant: String?, _ type: String = "LEAD_CREATED", _ details: [String: JSONValue] = [:]) -> AuditRecord {
    AuditRecord(tenantID: tenant?.tenant, actorSub: "u-1", actorEmail: "u-1@example.test", eventType: type, severity: .info, details: details)
}

func newLead(_ tenant: String) -> Lead {
    let now = Timestamps.now()
    return Lead(id: RequestIDs.generate(), name: "n", email: "n@x.example", status: "new", createdBy: "u-1", createdAt: now, updatedAt: now)
}

/// Every event of a chain, in seq order.
func chain(_ store: any AuditStore, _ id: String) async throws -> [AuditEvent] {
    try await store.chainEvents(id, after: 0, through: Int64.max, limit: 100_000).map(\.event)
}

@Suite(.serialized) struct AuditStoreTests {
    /// The issue's proof of no forks: 200 concurrent writers across 3 tenants and 200 on one tenant,
    /// each a lead insert plus its audit event in one transaction, then every chain verified.
    @Test func concurrentWritersNeverForkOrGapAChainOnPostgres() async throws {
        try await withAuditStore(try Backend.postgres.databaseURL()) { store in
            let prefix = "conc-\(UUID().uuidString.prefix(6))"
            let spread = (0..<3).map { "\(prefix)-t\($0)" }
            let single = "\(prefix)-one"
            // Two phases, each 200 concurrent lead + event transactions: over 3 tenants, then on one.
            func phase(_ tenantOf: @escaping @Sendable (Int) -> String) async throws -> Duration {
                let started = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<200 {
                        let tenant = tenantOf(index)
                        group.addTask {
                            try await store.create(
                                tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant, "LEAD_CREATED", ["i": .number(Double(index))]))
                        }
                    }
                    try await group.waitForAll()
                }
                return ContinuousClock.now - started
            }
            let manyElapsed = try await phase { spread[$0 % 3] }
            let oneElapsed = try await phase { _ in single }
            for (tenant, expected) in [(spread[0], 67), (spread[1], 67), (spread[2], 66), (single, 200)] {
                let events = try await chain(store, tenant)
                #expect(events.map(\.seq) == Array(1...Int64(expected)), "gapless seq in \(tenant)")
                #expect(Set(events.map(\.prevEventHash)).count == expected, "no two events share a predecessor (no fork)")
                #expect(try await store.chainHead(tenant)?.seq == Int64(expected))
                let leads = try await store.list(tenant: tenant.tenant, limit: 200, after: nil)
                #expect(leads.count == expected, "every lead has its event and every event its lead")
            }
            let verifyStarted = ContinuousClock.now
            var verified = 0
            for tenant in spread + [single] {
                let report = try await AuditChainVerifier(store: store).verify(tenant: tenant, full: true)
                #expect(report.breaks.isEmpty, "\(report.breaks)")
                verified += report.events
            }
            let verifyElapsed = ContinuousClock.now - verifyStarted
            #expect(verified == 400)
            // A figure for the closing note, not an assertion: a timed unit test would flake on a loaded machine.
            print(
                "audit appends (lead + event transactions, 200 concurrent): 3 tenants \(Int(200 / manyElapsed.seconds))/s, "
                    + "one tenant \(Int(200 / oneElapsed.seconds))/s; verified \(verified) events at \(Int(Double(verified) / verifyElapsed.seconds))/s")
        }
    }

    @Test func concurrentWritersOnSQLiteStayOrdered() async throws {
        let url = try Backend.sqlite.databaseURL()
        try await withAuditStore(url) { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<100 {
                    let tenant = index.isMultiple(of: 2) ? "t-a" : "t-b"
                    group.addTask { try await store.create(tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant)) }
                    group.addTask { try await store.append(record(nil, "RBAC_CACHE_PURGED")) }
                }
                try await group.waitForAll()
            }
            for (id, expected) in [("t-a", 50), ("t-b", 50), ("platform", 100)] {
                #expect(try await chain(store, id).map(\.seq) == Array(1...Int64(expected)))
            }
            let report = try await AuditChainVerifier(store: store).verify(full: true)
            #expect(report.breaks.isEmpty)
            #expect(report.chains == 3)
        }
    }

    @Test(arguments: Backend.allCases) func aFailedChangeWritesNoEventAndAFailedEventUndoesTheChange(_ backend: Backend) async throws {
        try await withAuditStore(try backend.databaseURL()) { store in
            let tenant = "atomic-\(UUID().uuidString.prefix(6))"
            let lead = newLead(tenant)
            try await store.create(tenant: tenant.tenant, lead: lead, audit: record(tenant))
            // The same lead id again: the insert fails, so no event is appended.
            await #expect(throws: StoreUnavailable.self) { try await store.create(tenant: tenant.tenant, lead: lead, audit: record(tenant)) }
            // An event that cannot be written (details outside the format): the lead is not created.
            let other = newLead(tenant)
            await #expect(throws: StoreUnavailable.self) {
                try await store.create(tenant: tenant.tenant, lead: other, audit: record(tenant, "LEAD_CREATED", ["x": .number(0.5)]))
            }
            #expect(try await store.get(tenant: tenant.tenant, id: other.id) == nil)
            // Update and delete of a missing lead: nothing changes, no event.
            let missing = RequestIDs.generate()
            #expect(try await store.delete(tenant: tenant.tenant, id: missing, audit: record(tenant, "LEAD_DELETED")) == false)
            #expect(try await store.update(tenant: tenant.tenant, id: missing, fields: LeadFields(status: .set("won")), updatedAt: Timestamps.now(), audit: record(tenant, "LEAD_UPDATED")) == nil)
            #expect(try await chain(store, tenant).map(\.eventType) == ["LEAD_CREATED"])
            #expect(try await store.delete(tenant: tenant.tenant, id: lead.id, audit: record(tenant, "LEAD_DELETED")))
            #expect(try await chain(store, tenant).map(\.eventType) == ["LEAD_CREATED", "LEAD_DELETED"])
        }
    }

    @Test func updateDeleteAndTruncateFailForTheApplicationRoleOnPostgres() async throws {
        let url = try Backend.postgres.databaseURL()
        try await withAuditStore(url) { store in
            let tenant = "ro-\(UUID().uuidString.prefix(6))"
            try await store.append(record(tenant))
            try await ScratchDatabase.superuser(url) { client in  // the application role (owner of the tables)
                try await client.withConnection { connection in
                    // In the tenant's row-level-security scope, so the rows are there to be refused.
                    _ = try await connection.query("SELECT set_config('app.tenant_id', \(tenant), false)", logger: ScratchDatabase.logger)
                    defer { Task { _ = try? await connection.query("RESET app.tenant_id", logger: ScratchDatabase.logger) } }
                    var visible = 0
                    for try await count in try await connection.query(
                        "SELECT count(*)::int FROM audit_events WHERE chain_id = \(tenant)", logger: ScratchDatabase.logger
                    ).decode(Int.self) {
                        visible = count
                    }
                    #expect(visible == 1)
                    for statement in [
                        "UPDATE audit_events SET severity = 'critical' WHERE chain_id = '\(tenant)'",
                        "DELETE FROM audit_events WHERE chain_id = '\(tenant)'",
                        "TRUNCATE audit_events",
                        "DELETE FROM audit_chain_heads WHERE chain_id = '\(tenant)'",
                        "UPDATE audit_chain_heads SET seq = 0 WHERE chain_id = '\(tenant)'",
                    ] {
                        await #expect(throws: PSQLError.self, "\(statement)") {
                            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: ScratchDatabase.logger)
                        }
                    }
                }
            }
            #expect(try await chain(store, tenant).count == 1)
        }
    }

    @Test func updateAndDeleteFailOnSQLite() async throws {
        let url = try Backend.sqlite.databaseURL()
        try await withAuditStore(url) { store in
            try await store.append(record("t-a"))
            guard let sqlite = store as? SQLiteDatabase else { throw RedisTestError("not SQLite") }
            for statement in ["UPDATE audit_events SET severity = 'critical'", "DELETE FROM audit_events", "DELETE FROM audit_chain_heads"] {
                await #expect(throws: StoreUnavailable.self, "\(statement)") { _ = try await sqlite.run(statement, []) }
            }
            #expect(try await chain(store, "t-a").count == 1)
        }
    }

    @Test(arguments: Backend.allCases) func listingIsNewestFirstFilteredAndPaged(_ backend: Backend) async throws {
        try await withAuditStore(try backend.databaseURL()) { store in
            let tenant = "list-\(UUID().uuidString.prefix(6))"
            let other = "list-other-\(UUID().uuidString.prefix(6))"
            for index in 0..<5 { try await store.append(record(tenant, index.isMultiple(of: 2) ? "LEAD_CREATED" : "LEAD_UPDATED")) }
            try await store.append(record(other))
            var query = AuditQuery(scope: .chain(.tenant(tenant.tenant)), limit: 2)
            var seen: [Int64] = []
            while true {
                let page = try await store.auditEvents(query)
                #expect(page.allSatisfy { $0.tenantID == tenant }, "never another tenant's events")
                seen += page.map(\.seq)
                guard page.count == query.limit, let last = page.last else { break }
                query.cursor = AuditCursor(occurredAt: last.occurredAt, seq: last.seq, chainID: last.chainID)
            }
            #expect(seen == [5, 4, 3, 2, 1])
            let updates = try await store.auditEvents(AuditQuery(scope: .chain(.tenant(tenant.tenant)), eventType: "LEAD_UPDATED", limit: 50))
            #expect(updates.map(\.seq) == [4, 2])
            let all = try await store.auditEvents(AuditQuery(scope: .all, limit: 200))
            #expect(Set(all.map(\.chainID)).isSuperset(of: [tenant, other]))
            let future = try await store.auditEvents(AuditQuery(scope: .chain(.tenant(tenant.tenant)), since: "2999-01-01T00:00:00.000000Z", limit: 50))
            #expect(future.isEmpty)
        }
    }
}

/// Each tampering is found at the right seq by the timer function and by `fnhost verify-audit`.
@Suite(.serialized) struct AuditTamperTests {
    enum Tampering: String, CaseIterable, Sendable {
        case changeDetail, deleteMiddle, deleteTail, swapTwo, truncateAfterCheckpoint, deleteHead
    }

    static let tenant = "t-tamper"

    /// 6 events on the tenant's chain, then the tampering; returns the expected first bad seq and reason.
    static func apply(_ tampering: Tampering, _ database: ScratchDatabase, _ store: any ModuleStore) async throws -> (Int64, String) {
        let chain = "audit_events WHERE chain_id = '\(tenant)'"
        switch tampering {
        case .changeDetail:
            try await database.tamper([
                "UPDATE audit_events SET details = jsonb_set(details, '{i}', '999') WHERE chain_id = '\(tenant)' AND seq = 3"
            ])
            return (3, "hash_mismatch")
        case .deleteMiddle:
            try await database.tamper(["DELETE FROM \(chain) AND seq = 3"])
            return (3, "gap")
        case .deleteTail:
            try await database.tamper(["DELETE FROM \(chain) AND seq = 6"])
            return (6, "missing_tail")
        case .swapTwo:
            try await database.tamper([
                "UPDATE audit_events SET seq = 1000 WHERE chain_id = '\(tenant)' AND seq = 3",
                "UPDATE audit_events SET seq = 3 WHERE chain_id = '\(tenant)' AND seq = 4",
                "UPDATE audit_events SET seq = 4 WHERE chain_id = '\(tenant)' AND seq = 1000",
            ])
            return (3, "broken_link")
        case .truncateAfterCheckpoint:
            // Verified once (checkpoint at 6), then the tail and the head rolled back consistently:
            // only the checkpoint can tell.
            let report = try await AuditChainVerifier(store: store).verify(tenant: tenant)
            #expect(report.breaks.isEmpty)
            try await database.tamper([
                "DELETE FROM \(chain) AND seq >= 5",
                "UPDATE audit_chain_heads SET seq = 4, head_hash = (SELECT current_event_hash FROM \(chain) AND seq = 4) WHERE chain_id = '\(tenant)'",
            ])
            return (6, "checkpoint_mismatch")
        case .deleteHead:
            try await database.tamper(["DELETE FROM audit_chain_heads WHERE chain_id = '\(tenant)'"])
            return (7, "missing_head")
        }
    }

    @Test(arguments: Tampering.allCases) func tamperingIsReportedAtTheRightSeq(_ tampering: Tampering) async throws {
        try await ScratchDatabase.with { database in
            let expected = try await withAuditStore(database.url) { store in
                for index in 1...6 { try await store.append(record(Self.tenant, "LEAD_CREATED", ["i": .number(Double(index))])) }
                try await store.append(record("t-untouched"))
                let expected = try await Self.apply(tampering, database, store)

                // The timer function: appends AUDIT_CHAIN_BROKEN (critical) to the platform chain.
                let verification = AuditVerification(store: store, logger: ScratchDatabase.logger, metrics: NOOPMetricsHandler.instance)
                try await AuditChainVerifierFunction(verification: verification).run(
                    TimerInfo(isPastDue: false, scheduleStatus: nil),
                    context: TimerContext(functionName: "AuditChainVerifier", invocationID: "i", logger: ScratchDatabase.logger))
                let outcome = try await store.auditEvents(AuditQuery(scope: .chain("platform"), limit: 1)).first
                #expect(outcome?.eventType == "AUDIT_CHAIN_BROKEN")
                #expect(outcome?.severity == "critical")
                let details = outcome?.details.jsonValue
                #expect(details?["breaks"] == .number(1), "only the tampered chain is broken")
                let broken = details?["broken"]?.arrayValue?.first
                #expect(broken?["chain_id"] == .string(Self.tenant))
                #expect(broken?["seq"] == .number(Double(expected.0)))
                #expect(broken?["reason"] == .string(expected.1))
                return expected
            }
            // The command line, on the same database (incremental, as an operator would run it).
            let run = try await FnhostProcess.run(["verify-audit"], environment: ["DATABASE_URL": database.url])
            #expect(run.status == 1, "\(run.output)")
            #expect(run.output.contains("chain \(Self.tenant): first bad seq \(expected.0) (\(expected.1))"), "\(run.output)")
            #expect(!run.output.contains("t-untouched"))
        }
    }

    @Test func anIntactLogVerifiesAndMovesTheCheckpoint() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                for _ in 1...3 { try await store.append(record(Self.tenant)) }
            }
            let first = try await FnhostProcess.run(["verify-audit"], environment: ["DATABASE_URL": database.url])
            #expect(first.status == 0, "\(first.output)")
            let scoped = try await FnhostProcess.run(["verify-audit", "--tenant", Self.tenant, "--full"], environment: ["DATABASE_URL": database.url])
            #expect(scoped.status == 0, "\(scoped.output)")
            try await withAuditStore(database.url) { store in
                #expect(try await store.checkpoints()[ChainID(stored: Self.tenant)] == ChainHead(seq: 3, hash: try await chain(store, Self.tenant)[2].currentEventHash, occurredAt: nil))
                let outcomes = try await chain(store, "platform")
                #expect(outcomes.map(\.eventType) == ["AUDIT_CHAIN_VERIFIED", "AUDIT_CHAIN_VERIFIED"])
                let firstOutcome = try #require(outcomes.first)
                #expect(firstOutcome.details.jsonValue["chains"] == .number(1))
                #expect(firstOutcome.details.jsonValue["events"] == .number(3))
            }
        }
    }

    /// `fnhost migrate` and `verify-audit` load settings and secrets as the server does: a
    /// `DATABASE_URL` held only by the secrets provider is the database they work on (before, they
    /// read the environment alone and migrated a local SQLite file, exit 0).
    @Test func subcommandsReadTheSecretsProvider() async throws {
        try await ScratchDatabase.with { database in
            let vault = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-secrets-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: vault, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: vault) }
            try Data(database.url.utf8).write(to: vault.appendingPathComponent("DATABASE_URL"))
            let environment = ["SECRETS_PROVIDER": "files:\(vault.path)", "DATABASE_URL": "", "DATABASE_MIGRATION_URL": ""]
            let migrate = try await FnhostProcess.run(["migrate"], environment: environment)
            #expect(migrate.status == 0, "\(migrate.output)")
            #expect(!migrate.output.contains(database.url))
            let configuration = try PostgresURL.configuration(database.url, caFile: nil)
            let pending = try await StoreSetup.withClient(configuration, logger: ScratchDatabase.logger) {
                try await PostgresMigrator.pending($0, logger: ScratchDatabase.logger)
            }
            #expect(pending.isEmpty, "the provider's database is the one migrated")
            _ = try await withAuditStore(database.url) { store in try await store.append(record(Self.tenant)) }
            let verify = try await FnhostProcess.run(["verify-audit", "--full"], environment: environment)
            #expect(verify.status == 0, "\(verify.output)")
            #expect(verify.output.contains("1 chains, 1 events"), "\(verify.output)")
            // A provider that cannot be used stops the command naming the setting, not a type name.
            let broken = try await FnhostProcess.run(["migrate"], environment: ["SECRETS_PROVIDER": "files:/proc/fnhost-no-such-dir"])
            #expect(broken.status != 0)
            #expect(broken.output.contains("SECRETS_PROVIDER"), "\(broken.output)")
        }
    }

    /// `TLS_CA_FILE` given only in local.settings.json is the CA `fnhost migrate` and `verify-audit` trust
    /// for `sslmode=verify-full` (they read it from the environment alone before, and failed).
    @Test func subcommandsTrustTheCAFileOfTheSettings() async throws {
        let base = try Backend.postgres.databaseURL().replacingOccurrences(of: "?sslmode=disable", with: "")
        let settings = #"{"IsEncrypted":false,"Values":{"TLS_CA_FILE":"\#(try TestServices.caFile())","DATABASE_URL":"\#(base)?sslmode=verify-full"}}"#
        let root = try ScriptRoot.repository(localSettings: settings)
        let migrate = try await FnhostProcess.run(["migrate", "--script-root", root], environment: [:])
        #expect(migrate.status == 0, "\(migrate.output)")
        let verify = try await FnhostProcess.run(["verify-audit", "--script-root", root], environment: [:])
        #expect(verify.status != 2, "it ran: \(verify.output)")
    }

    @Test func aDatabaseThatCannotBeOpenedExitsTwo() async throws {
        let run = try await FnhostProcess.run(["verify-audit"], environment: ["DATABASE_URL": "sqlite:/proc/fnhost-no-such-dir/x.sqlite"])
        #expect(run.status == 2, "\(run.output)")
    }
}

extension Duration {
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }
}

@Suite(.serialized) struct AuditSideEventsTests {
    static func identity(_ token: String) -> Identity {
        Identity(
            subject: "u-1", email: "u-1@example.test", tenantID: "t-login", amr: ["pwd"], groups: [], platformSuperAdminClaim: false,
            expiresAt: Date().timeIntervalSince1970 + 600, issuedAt: Date().timeIntervalSince1970, jti: nil, tokenHash: token)
    }

    /// Two instances (two `LoginAudit`s) on one Redis see the same token: one LOGIN_VALIDATED.
    @Test func loginValidatedOncePerTokenAcrossInstances() async throws {
        try await withAuditStore(try Backend.sqlite.databaseURL()) { store in
            let sink = AuditLog(store: store, logger: ScratchDatabase.logger, metrics: NOOPMetricsHandler.instance)
            let first = LoginAudit(cache: RedisCache(client: try TestRedis.client()), sink: sink)
            let second = LoginAudit(cache: RedisCache(client: try TestRedis.client()), sink: sink)
            let token = UUID().uuidString
            let now = Date().timeIntervalSince1970
            await first.observe(Self.identity(token), now: now)
            await first.observe(Self.identity(token), now: now)
            await second.observe(Self.identity(token), now: now)
            #expect(try await chain(store, "t-login").count == 1)
            await second.observe(Self.identity(UUID().uuidString), now: now)
            let events = try await chain(store, "t-login")
            #expect(events.map(\.eventType) == ["LOGIN_VALIDATED", "LOGIN_VALIDATED"])
            #expect(try #require(events.first).details.jsonValue["token_sha256"] == .string(token))
        }
    }

    /// The verifier's metrics: breaks of the last run and the time of the last verification.
    @Test func verificationExportsBreaksAndLastVerified() async throws {
        try await withAuditStore(try Backend.sqlite.databaseURL()) { store in
            let registry = PrometheusCollectorRegistry()
            let verification = AuditVerification(
                store: store, logger: ScratchDatabase.logger, metrics: PrometheusMetricsFactory(registry: registry))
            for _ in 1...3 { try await store.append(record("t-m")) }
            _ = try await verification.run()
            var text: [UInt8] = []
            registry.emit(into: &text)
            #expect(String(decoding: text, as: UTF8.self).contains("audit_chain_breaks 0"))
            guard let sqlite = store as? SQLiteDatabase else { throw RedisTestError("not SQLite") }
            _ = try await sqlite.run("DROP TRIGGER audit_events_no_update", [])
            _ = try await sqlite.run("UPDATE audit_events SET actor_email = 'mallory@example.test' WHERE chain_id = 't-m' AND seq = 2", [])
            let report = try await verification.run(full: true)
            #expect(report.breaks == [AuditChainVerifier.Break(chainID: "t-m", seq: 2, reason: .hashMismatch)])
            text.removeAll()
            registry.emit(into: &text)
            let metrics = String(decoding: text, as: UTF8.self)
            #expect(metrics.contains("audit_chain_breaks 1"))
            #expect(metrics.contains("audit_chain_last_verified_timestamp_seconds 1"), "a unix time, not zero")
        }
    }
}

/// `GET /api/audit` through the real module: own tenant with AUDIT_READ, others only for a super admin.
@Suite(.serialized) struct AuditEndpointTests {
    @Test(arguments: Backend.allCases) func auditReadIsScopedToTheTenant(_ backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let a = "aud-a-\(UUID().uuidString.prefix(6))"
            let b = "aud-b-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: a, user: "u-a", ["LEADS_WRITE", "AUDIT_READ"])
            await LeadsHarness.grant(host, tenant: b, user: "u-b", ["LEADS_WRITE"])
            await host.state.set(answer: RBACAnswer(tenantID: b, userID: "u-root", permissions: [], groups: ["Leaderboard_SuperAdmins"]))
            let tokenA = try LeadsHarness.token(key, tenant: a, user: "u-a")
            let tokenB = try LeadsHarness.token(key, tenant: b, user: "u-b")
            let root = try LeadsHarness.token(key, tenant: b, user: "u-root")
            let created = try await client.send(.post, "/api/leads", token: tokenA, json: #"{"name":"Ada","email":"ada@a.example"}"#)
            #expect(created.status == .created)
            #expect(try await client.send(.post, "/api/leads", token: tokenB, json: #"{"name":"Bob","email":"bob@b.example"}"#).status == .created)

            let own = try await client.send(.get, "/api/audit?event_type=LEAD_CREATED", token: tokenA)
            #expect(own.status == .ok)
            let items = own.json["items"] as? [[String: Any]] ?? []
            #expect(items.count == 1)
            #expect(items.first?["tenant_id"] as? String == a)
            #expect((items.first?["details"] as? [String: Any])?["lead_id"] as? String == (created.json["id"] as? String))
            #expect((items.first?["current_event_hash"] as? String)?.count == 64)
            let everything = try await client.send(.get, "/api/audit?limit=200", token: tokenA)
            let types = Set(((everything.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["event_type"] as? String })
            #expect(types.isSuperset(of: ["LOGIN_VALIDATED", "RBAC_FETCHED", "LEAD_CREATED"]))
            #expect(((everything.json["items"] as? [[String: Any]]) ?? []).allSatisfy { $0["chain_id"] as? String == a })

            #expect(try await client.send(.get, "/api/audit", token: tokenB).code == "PERMISSION_DENIED", "no AUDIT_READ")
            #expect(try await client.send(.get, "/api/audit?tenant_id=\(b)", token: tokenA).code == "PERMISSION_DENIED")
            #expect(try await client.send(.get, "/api/audit?tenant_id=*", token: tokenA).code == "PERMISSION_DENIED")
            let other = try await client.send(.get, "/api/audit?tenant_id=\(a)&event_type=LEAD_CREATED", token: root)
            #expect(other.status == .ok, "a super admin reads any tenant")
            #expect((other.json["items"] as? [[String: Any]])?.count == 1)
            let all = try await client.send(.get, "/api/audit?tenant_id=*&event_type=LEAD_CREATED&limit=200", token: root)
            let chains = Set(((all.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["chain_id"] as? String })
            #expect(chains.isSuperset(of: [a, b]))

            for bad in ["since=yesterday", "event_type=lead", "cursor=x", "limit=0", "limit=201"] {
                #expect(try await client.send(.get, "/api/audit?\(bad)", token: tokenA).code == "VALIDATION_FAILED", "\(bad)")
            }
            let later = try await client.send(.get, "/api/audit?since=2999-01-01T00:00:00Z", token: tokenA)
            #expect((later.json["items"] as? [[String: Any]])?.isEmpty == true)
            // Paging: one at a time, newest first, no repeats.
            var cursor: String?
            var seqs: [Int] = []
            repeat {
                let page = try await client.send(.get, "/api/audit?limit=1" + (cursor.map { "&cursor=\($0)" } ?? ""), token: tokenA)
                seqs += ((page.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["seq"] as? Int }
                cursor = page.json["next_cursor"] as? String
            } while cursor != nil && seqs.count < 100
            #expect(seqs == Array((1...seqs.count).reversed()))
        }
    }
}

/// The sealing PostgreSQL does under the head's lock (`fnhost_audit_append`, migration 11).
@Suite struct PostgresSealingTests {
    /// A chain never goes back in time: with its last event an hour ahead of this clock (another
    /// instance's), the next event takes that time, on both write paths (a create in one statement,
    /// a keyed create in a transaction), and the chain verifies.
    @Test(arguments: [false, true]) func aChainNeverGoesBackInTime(keyed: Bool) async throws {
        try await ScratchDatabase.with { database in
            let tenant = "t-clock"
            try await withAuditStore(database.url) { store in
                try await store.create(tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant))
                let ahead = "2099-01-01T00:00:00.123456Z"
                try await ScratchDatabase.superuser(database.adminURL) { admin in
                    _ = try await admin.query(
                        "UPDATE audit_chain_heads SET last_occurred_at = \(ahead)::timestamptz WHERE chain_id = \(tenant)",
                        logger: ScratchDatabase.logger)
                }
                let key = keyed ? CreateIdempotency(key: "k-clock", requestHash: "h", response: "{}") : nil
                #expect(try await store.create(tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant), idempotency: key) == .created)
                let events = try await chain(store, tenant)
                #expect(events.count == 2)
                #expect(events.last?.occurredAt == ahead, "\(events.map(\.occurredAt))")
                #expect((events.first?.occurredAt ?? "") < ahead)
                let report = try await AuditChainVerifier(store: store).verify(tenant: tenant, full: true)
                #expect(report.breaks.isEmpty, "\(report.breaks)")
                #expect(report.events == 2)
            }
        }
    }
}

import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Testing

@testable import Functions

/// docs/data.md: a schema behind the binary (manual migrations) and a schema ahead of it (a rolled-back
/// deployment), through the real module on a database of their own.
@Suite(.serialized) struct SchemaGateTests {
    @Test func aSchemaBehindAnswers503NamingFnhostMigrateUntilItIsMigrated() async throws {
        try await ScratchDatabase.with { database in
            try await LeadsHarness.run(databaseURL: database.url, extra: ["DATABASE_MIGRATIONS": "manual"]) { host, key, client in
                await LeadsHarness.grant(host, tenant: "t-schema", user: "u-1", ["LEADS_READ", "LEADS_WRITE"])
                let token = try LeadsHarness.token(key, tenant: "t-schema", user: "u-1")
                let ready = try await client.execute(uri: "/health/ready", method: .get) { Reply(status: $0.status, headers: $0.headers, body: String(buffer: $0.body)) }
                #expect(ready.status == .serviceUnavailable && ready.message.contains("schema"), "\(ready.body)")
                for (method, body) in [(HTTPRequest.Method.get, nil as String?), (.post, #"{"name":"n","email":"n@x.example"}"#)] {
                    let answer = try await client.send(method, "/api/leads", token: token, json: body)
                    #expect(answer.status == .serviceUnavailable && answer.code == "SERVICE_UNAVAILABLE", "\(answer.body)")
                    #expect(answer.message.contains("fnhost migrate"), "\(answer.message)")
                }
                #expect(try await client.send(.get, "/api/audit", token: token).message.contains("fnhost migrate"))
            }
            // The operator migrates; the next start serves.
            _ = try await StoreSetup.migrate(databaseURL: database.url, logger: ScratchDatabase.logger)
            try await LeadsHarness.run(databaseURL: database.url, extra: ["DATABASE_MIGRATIONS": "manual"]) { host, key, client in
                await LeadsHarness.grant(host, tenant: "t-schema", user: "u-1", ["LEADS_READ", "LEADS_WRITE"])
                let token = try LeadsHarness.token(key, tenant: "t-schema", user: "u-1")
                #expect(try await client.send(.get, "/api/leads", token: token).status == .ok)
                #expect(try await client.execute(uri: "/health/ready", method: .get) { $0.status } == .ok)
            }
        }
    }

    @Test(arguments: ["auto", "manual"])
    func aSchemaAheadServesReadsAndRefusesWrites(mode: String) async throws {
        try await ScratchDatabase.with { database in
            _ = try await StoreSetup.migrate(databaseURL: database.url, logger: ScratchDatabase.logger)
            // A newer binary's migration, as after a rollback of the deployment.
            try await ScratchDatabase.superuser(database.adminURL) { client in
                _ = try await client.query("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')", logger: ScratchDatabase.logger)
            }
            try await LeadsHarness.run(databaseURL: database.url, extra: ["DATABASE_MIGRATIONS": mode]) { host, key, client in
                await LeadsHarness.grant(host, tenant: "t-ahead", user: "u-1", ["LEADS_READ", "LEADS_WRITE", "LEADS_DELETE"])
                let token = try LeadsHarness.token(key, tenant: "t-ahead", user: "u-1")
                #expect(try await client.send(.get, "/api/leads", token: token).status == .ok, "reads serve")
                let write = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"n","email":"n@x.example"}"#)
                #expect(write.status == .serviceUnavailable && write.message.contains("newer than this binary"), "\(write.body)")
                #expect(try await client.send(.patch, "/api/leads/\(UUID().uuidString.lowercased())", token: token, json: "{}").status == .serviceUnavailable)
                #expect(try await client.execute(uri: "/health/ready", method: .get) { $0.status } == .ok, "ready for reads")
            }
            // Nothing was written behind the gate.
            let leads = try await withAuditStore(database.url) { store in try await store.list(tenant: "t-ahead".tenant, limit: 10, after: nil) }
            #expect(leads.isEmpty)
        }
    }

    @Test func theWatcherSeesAMigrationWithoutARestart() async throws {
        try await ScratchDatabase.with { database in
            let client = PostgresClient(configuration: try PostgresURL.configuration(database.url), backgroundLogger: ScratchDatabase.logger)
            let gate = SchemaGate(latest: Migrations.postgres.map(\.version).max() ?? 0)
            let known = Migrations.postgres.map(\.version)
            let watcher = SchemaWatcher(
                gate: gate, read: { try await PostgresMigrator.applied(client, logger: ScratchDatabase.logger) }, known: known,
                logger: ScratchDatabase.logger, interval: .milliseconds(100))
            let group = ServiceGroup(services: [watcher], logger: ScratchDatabase.logger)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await client.run() }
                gate.update(applied: try await PostgresMigrator.applied(client, logger: ScratchDatabase.logger), known: known)
                #expect(gate.status == .behind(pending: known))
                #expect(throws: FunctionError.self) { try gate.check(write: false) }
                tasks.addTask { try await group.run() }
                _ = try await PostgresMigrator.migrate(client, logger: ScratchDatabase.logger)
                let deadline = ContinuousClock.now + .seconds(5)
                while gate.status != .current, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
                #expect(gate.status == .current)
                #expect(throws: Never.self) { try gate.check(write: true) }
                await group.triggerGracefulShutdown()
                tasks.cancelAll()
            }
        }
    }
}

import CoreMetrics
import Foundation
import FunctionRuntime
import Logging
import PostgresNIO
import TestSupport
import Testing

@testable import Functions

/// The module behind a transaction pooler (issue 32, SPEC §13b): Debian's PgBouncer in `pool_mode=transaction`, which
/// `scripts/with-services.sh` starts in front of the test PostgreSQL (`FNHOST_TEST_PGBOUNCER_URL`). Each transaction
/// may run on another server connection, named prepared statements do not survive that, and PgBouncer refuses
/// every startup parameter but a few. With `DATABASE_POOLER=transaction` the whole API, the migrations, the timers,
/// the outbox and `fnhost verify-audit` run through it with no 5xx.
@Suite(.serialized) struct PoolerTests {
    static let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }

    /// The PgBouncer URL, on `database` (PgBouncer's `*` entry serves any database of the server).
    static func pooled(_ database: ScratchDatabase) throws -> String {
        var components = URLComponents(string: try TestServices.required("FNHOST_TEST_PGBOUNCER_URL"))
        components?.path = "/" + database.name
        return try #require(components?.string)
    }

    @Test func aConnectionThatSendsStartupParametersIsRefusedAndTheOperatorIsToldWhy() async throws {
        let url = try TestServices.required("FNHOST_TEST_PGBOUNCER_URL")
        // Direct mode sends statement_timeout at start-up: PgBouncer answers 08P01, in its own words, with the fix.
        let refused = try #require(await PostgresURL(url, pooler: .none).probe(logger: Self.logger))
        #expect(refused.contains("SQLSTATE 08P01"), "\(refused)")
        #expect(refused.contains("unsupported startup parameter"), "\(refused)")
        #expect(refused.contains("DATABASE_POOLER=transaction"), "\(refused)")
        #expect(!refused.contains(try #require(URLComponents(string: url)?.password)), "no password in what is logged")
        #expect(try await PostgresURL(url, pooler: .transaction).probe(logger: Self.logger) == nil)
        #expect(try await PostgresURL(url, pooler: .session).probe(logger: Self.logger) == nil)
        // Nothing listens: the client's own error, not a guess.
        let closed = try #require(await PostgresURL("postgres://u:p@127.0.0.1:1/x?sslmode=disable").probe(logger: Self.logger))
        #expect(closed.contains("connectionError"), "\(closed)")
    }

    @Test func theSettingIsReadAsBytes() throws {
        #expect(try DatabasePooler(setting: nil) == DatabasePooler.none)
        #expect(try DatabasePooler(setting: "") == DatabasePooler.none)
        #expect(try DatabasePooler(setting: "Transaction") == .transaction)
        #expect(try DatabasePooler(setting: "session").statements == .prepared)
        #expect(try DatabasePooler(setting: "transaction").statements == .unnamed)
        #expect(throws: StoreUnavailable.self) { try DatabasePooler(setting: "transactions") }
        #expect(throws: StoreUnavailable.self) { try DatabasePooler(setting: "transactio\u{0300}n") }
    }

    @Test func theWholeAPIRunsThroughATransactionPoolerWithNo5xx() async throws {
        try await ScratchDatabase.with { database in
            let url = try Self.pooled(database)
            let extra = [
                "DATABASE_POOLER": "transaction", "DATABASE_POOL_SIZE": "6", "EMAIL_DISPATCH_SCHEDULE": "*/1 * * * * *",
                "EMAIL_RETRY_BASE_SECONDS": "0.5",
            ]
            // Migrations at start-up (DATABASE_MIGRATIONS=auto) run through the pooler too.
            try await LeadsHarness.run(databaseURL: url, extra: extra) { host, key, client in
                let base = "http://localhost:\(try #require(client.port))"
                let tenants = (0..<3).map { "t-pool-\($0)-\(UUID().uuidString.prefix(6))" }
                for tenant in tenants {
                    await LeadsHarness.grant(host, tenant: tenant, user: "u-1", LeadsTests.everything + ["EMAIL_SEND"], mfa: true)
                }
                let statuses = try await withThrowingTaskGroup(of: [Int].self) { group in
                    for worker in 0..<12 {
                        let tenant = tenants[worker % tenants.count]
                        let token = try LeadsHarness.token(key, tenant: tenant, user: "u-1")
                        group.addTask { try await Self.session(base: base, token: token, worker: worker) }
                    }
                    var all: [Int] = []
                    for try await statuses in group { all += statuses }
                    return all
                }
                #expect(statuses.count == 12 * 13)
                #expect(statuses.filter { $0 >= 500 || $0 < 0 }.isEmpty, "no 5xx through the pooler: \(statuses.filter { $0 >= 500 || $0 < 0 })")
                #expect(statuses.allSatisfy { [200, 201, 202, 204].contains($0) }, "\(Set(statuses))")
                // The outbox, on its timer, through the pooler: every queued email reaches the host once.
                let delivered = await eventually(timeout: .seconds(20), every: .milliseconds(200)) {
                    await host.state.emailAccepted.count == 12
                }
                let accepted = await host.state.emailAccepted
                #expect(delivered, "\(accepted)")
                #expect(accepted.values.allSatisfy { $0 == 1 }, "each email once: \(accepted)")
            }
            // `fnhost verify-audit` through the pooler: every chain the run wrote verifies.
            let (chains, events, breaks) = try await StoreSetup.withStore(databaseURL: url, pooler: .transaction, logger: Self.logger) { store in
                let report = try await AuditVerification(store: store, logger: Self.logger, metrics: NOOPMetricsHandler.instance).run(full: true)
                return (report.chains, report.events, report.breaks.map(\.description))
            }
            #expect(breaks.isEmpty, "\(breaks)")
            #expect(chains >= 3)
            #expect(events >= 12 * 6)
        }
    }

    /// One client's requests, one after the other, each on its own connection: create (alone and with a key),
    /// list, page, read, update, export, delete, email. Returns every status.
    static func session(base: String, token: String, worker: Int) async throws -> [Int] {
        let json = ["Authorization": "Bearer \(token)", "Content-Type": "application/json"]
        var statuses: [Int] = []
        func send(_ method: String, _ path: String, _ body: String? = nil, _ headers: [String: String] = [:]) async throws -> String {
            // A failed request is recorded (-1), never thrown: every client finishes before the host stops.
            guard let (status, text, _) = try? await HTTP.send(base + path, method: method, body: body, headers: json.merging(headers) { $1 })
            else {
                statuses.append(-1)
                return ""
            }
            statuses.append(status)
            return text
        }
        var ids: [String] = []
        for index in 0..<3 {
            let key: [String: String] = index == 1 ? ["Idempotency-Key": "k-\(worker)-\(index)"] : [:]
            let created = try await send("POST", "/api/leads", #"{"name":"Lead \#(worker)-\#(index)","email":"l\#(index)@p.example"}"#, key)
            ids.append(LeadsFlowJSON.id(created) ?? "")
        }
        _ = try await send("GET", "/api/leads?limit=2")
        _ = try await send("GET", "/api/leads?limit=20")
        _ = try await send("GET", "/api/leads/\(ids[0])")
        _ = try await send("PATCH", "/api/leads/\(ids[0])", #"{"status":"won"}"#)
        _ = try await send("PATCH", "/api/leads/\(ids[1])", #"{"status":"lost"}"#)
        _ = try await send("POST", "/api/exports/leads")
        _ = try await send("DELETE", "/api/leads/\(ids[2])")
        _ = try await send("GET", "/api/leads/\(ids[1])")
        _ = try await send(
            "POST", "/api/emails", #"{"template":"welcome","to":"w\#(worker)@p.example","vars":{"i":\#(worker)}}"#,
            ["Idempotency-Key": "mail-\(worker)"])
        _ = try await send("GET", "/api/leads?limit=20")
        return statuses
    }
}

/// The `id` of a JSON object, read as bytes.
enum LeadsFlowJSON {
    static func id(_ body: String) -> String? {
        ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?["id"] as? String
    }
}

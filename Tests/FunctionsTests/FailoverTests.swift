import Foundation
import FunctionRuntime
import PostgresNIO
import TestSupport
import Testing

@testable import Functions

/// A failover as the module meets it (issue 32): the server it is connected to turns read-only (a demoted primary
/// keeps its sessions open; every write on them fails with 25006) and terminates sessions (57P01). Writes answer
/// 503 meanwhile, and once the database takes writes again they succeed within seconds, without a restart: a
/// connection that met 25006, 57P0x or a connection error is discarded, never handed out again.
@Suite(.serialized) struct FailoverTests {
    static func admin(_ database: ScratchDatabase, _ statements: [String]) async throws {
        try await ScratchDatabase.superuser(database.adminURL) { client in
            try await client.withConnection { connection in
                // The administrator's own session takes writes whatever the database's default says.
                _ = try await connection.query("SET default_transaction_read_only = off", logger: ScratchDatabase.logger)
                for statement in statements {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: ScratchDatabase.logger)
                }
            }
        }
    }

    @Test func writesRecoverOnceTheServerTakesWritesAgain() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url, deadline: .seconds(3)) { store in
                let tenant = "t-failover"
                // Both write paths: a create alone (one prepared statement) and a create with a key (a transaction).
                @Sendable func write(_ index: Int) async throws {
                    let key = index.isMultiple(of: 2) ? nil : CreateIdempotency(key: "k-\(index)", requestHash: "h", response: "{}")
                    _ = try await store.create(tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant), idempotency: key)
                }
                for index in 0..<4 { try await write(index) }
                try await Self.admin(database, [
                    "ALTER DATABASE \(database.name) SET default_transaction_read_only = on",
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database.name)' AND pid <> pg_backend_pid()",
                ])
                // Read-only: every write is refused as unavailable (503), none is lost silently.
                var refused = 0
                for index in 10..<22 {
                    do {
                        try await write(index)
                    } catch let error as StoreUnavailable {
                        #expect(error.functionError.status == .serviceUnavailable, "\(error)")
                        refused += 1
                    }
                }
                #expect(refused == 12, "every write while read-only is a 503")
                try await Self.admin(database, ["ALTER DATABASE \(database.name) RESET default_transaction_read_only"])
                // Writable again: the read-only sessions opened meanwhile are gone, so writes succeed at once.
                let started = ContinuousClock.now
                var recovered = 0
                for index in 30..<42 {
                    let done = await eventually(timeout: .seconds(5), every: .milliseconds(100)) { (try? await write(index)) != nil }
                    if done { recovered += 1 }
                }
                #expect(recovered == 12, "writes succeed again without a restart")
                #expect(ContinuousClock.now - started < .seconds(10))
                #expect(try await store.list(tenant: tenant.tenant, limit: 100, after: nil).count == 4 + recovered)
            }
        }
    }
}

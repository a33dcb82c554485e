import Logging
import PostgresNIO

/// Applies `Migrations.postgres` under a transaction-scoped advisory lock, so two instances
/// starting at once do not race.
enum PostgresMigrator {
    static func migrate(_ client: PostgresClient, logger: Logger) async throws -> [Int] {
        // Every instance migrates at start-up: when nothing is pending, say so without taking the lock.
        if (try? await pending(client, logger: logger))?.isEmpty == true { return [] }
        return try await client.withTransaction(logger: logger) { connection in
            // Waiting for another instance's migration is bounded by the caller, not the 5 s statement default.
            _ = try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
            _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtext('fnhost_schema_migrations'))", logger: logger)
            _ = try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger)
                .decode(Int32.self)
            {
                applied.insert(Int(version))
            }
            var ran: [Int] = []
            for migration in Migrations.postgres where !applied.contains(migration.version) {
                for statement in migration.statements {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                _ = try await connection.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))", logger: logger)
                ran.append(migration.version)
            }
            return ran
        }
    }
}

extension PostgresMigrator {
    /// The versions this binary has that the database has not applied (for `DATABASE_MIGRATIONS=manual`).
    static func pending(_ client: PostgresClient, logger: Logger) async throws -> [Int] {
        let applied = try await applied(client, logger: logger)
        return Migrations.postgres.map(\.version).filter { !applied.contains($0) }
    }
}

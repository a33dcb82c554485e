import Foundation
import FunctionRuntime
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Chooses the store from `DATABASE_URL`: `postgres://…` (a pooled `PostgresClient` run as a
/// service; with `DATABASE_MIGRATIONS=auto`, the default in every environment, migrations are
/// applied before serving under the migrator's advisory lock, bounded, and retried in the
/// background while the database is unreachable; `manual` leaves them to `fnhost migrate`) or
/// `sqlite:PATH`, and by default an embedded SQLite file under `.fnhost/data/`.
enum StoreSetup {
    static func make(_ context: inout ModuleContext, schema: SchemaGate) async throws(ModuleConfigurationError) -> any ModuleStore {
        let url: String?
        do {
            url = try await context.secrets.secret(named: ModuleSettingSpecs.databaseURL.name)
        } catch {
            throw ModuleConfigurationError(error.description)
        }
        let logger = context.logger
        let migrations = ModuleSettingSpecs.databaseMigrations.text(context.settings)?.lowercased() ?? "auto"
        guard migrations == "auto" || migrations == "manual" else {
            throw ModuleConfigurationError("DATABASE_MIGRATIONS must be auto or manual, not '\(migrations)'")
        }
        if let url, url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            let runtimeURL: PostgresURL
            let pooler: DatabasePooler
            do {
                pooler = try DatabasePooler(setting: ModuleSettingSpecs.databasePooler.text(context.settings))
                runtimeURL = try PostgresURL(url, caFile: ModuleSettingSpecs.tlsCAFile.text(context.settings), pooler: pooler)
            } catch {
                throw ModuleConfigurationError(error.description)
            }
            let size: Int
            let keepOpen: Int
            do {
                size = Int(try ModuleSettingSpecs.databasePoolSize.number(context.settings))
                keepOpen = Int(try ModuleSettingSpecs.databasePoolKeepOpen.number(context.settings))
            } catch {
                throw ModuleConfigurationError(error.description)
            }
            let pool = PostgresPool(configuration: runtimeURL.client, size: size, keepOpen: keepOpen, statements: pooler.statements, logger: logger)
            context.services.append(pool)
            let client = pool.clients[0]
            // Migrations run as the schema owner (`DATABASE_MIGRATION_URL`, default `DATABASE_URL`);
            // a separate runtime role then gets exactly the module's grants (docs/data.md).
            let migrationURL: String?
            do {
                migrationURL = try await context.secrets.secret(named: ModuleSettingSpecs.databaseMigrationURL.name).flatMap { $0.isEmpty ? nil : $0 }
            } catch {
                throw ModuleConfigurationError(error.description)
            }
            let migrateOnce: @Sendable () async throws -> [Int]
            if let migrationURL, migrationURL != url {
                let owner: PostgresClient.Configuration
                do {
                    owner = try PostgresURL.configuration(
                        migrationURL, caFile: ModuleSettingSpecs.tlsCAFile.text(context.settings), pooler: pooler)
                } catch {
                    throw ModuleConfigurationError("DATABASE_MIGRATION_URL: \(error.description)")
                }
                let role = postgresUser(url)
                migrateOnce = {
                    try await StoreSetup.withClient(owner, logger: logger) { owner in
                        let ran = try await PostgresMigrator.migrate(owner, logger: logger)
                        if let role { try await PostgresMigrator.grantRuntime(owner, role: role, logger: logger) }
                        return ran
                    }
                }
            } else {
                migrateOnce = { try await PostgresMigrator.migrate(client, logger: logger) }
            }
            let known = Migrations.postgres.map(\.version)
            @Sendable func refresh() async {
                if let applied = try? await withDeadline(.seconds(10), { try await PostgresMigrator.applied(client, logger: logger) }) {
                    schema.update(applied: applied, known: known)
                }
            }
            context.services.append(
                SchemaWatcher(gate: schema, read: { try await PostgresMigrator.applied(client, logger: logger) }, known: known, logger: logger))
            if migrations == "manual" {
                context.beforeServing {
                    await refresh()
                    if case .behind(let pending) = schema.status {
                        logger.error(
                            "the database schema is behind this binary (DATABASE_MIGRATIONS=manual): run `fnhost migrate`",
                            metadata: ["pending": .string("\(pending)")])
                    }
                }
            }
            if migrations == "auto" {
                // Bounded: an unreachable database must not keep the emulator from serving (data
                // requests answer 503, readiness says why) or from stopping; a failed attempt is
                // retried in the background until the database answers.
                let retry = MigrationRetry(migrate: migrateOnce, client: client, logger: logger, schema: schema)
                context.services.append(retry)
                context.beforeServing {
                    do {
                        let ran = try await withDeadline(.seconds(10)) { try await migrateOnce() }
                        if !ran.isEmpty { logger.info("migrations applied", metadata: ["versions": .string("\(ran)")]) }
                        await refresh()
                    } catch {
                        let cause = await runtimeURL.probe(logger: logger) ?? StoreUnavailable(classifying: error).description
                        logger.error(
                            "database unreachable at start-up: migrations not applied yet, retrying in the background",
                            metadata: ["cause": .string(cause)])
                        retry.pending.store(true, ordering: .relaxed)
                    }
                    if case .ahead(let version) = schema.status {
                        logger.error(
                            "the database schema is newer than this binary: writes are refused until this instance is upgraded",
                            metadata: ["schema_version": .stringConvertible(version), "binary_version": .stringConvertible(schema.latest)])
                    }
                }
            }
            return PostgresDatabase(pool: pool, logger: logger, metrics: context.metricsFactory)
        }
        let path: String
        if let url {
            guard url.hasPrefix("sqlite:") else {
                throw ModuleConfigurationError("DATABASE_URL must be postgres://… or sqlite:PATH")
            }
            path = String(url.dropFirst("sqlite:".count))
        } else {
            path = URL(fileURLWithPath: context.scriptRoot).appendingPathComponent(".fnhost/data/fnhost.sqlite").path
        }
        let store: SQLiteDatabase
        do {
            store = try await SQLiteDatabase.open(path: path, logger: logger)
        } catch {
            throw ModuleConfigurationError("cannot open the SQLite database at \(path)")
        }
        if let applied = try? await store.appliedVersions() {
            schema.update(applied: applied, known: Migrations.sqlite.map(\.version))
        }
        return store
    }

    /// `fnhost migrate`: applies every pending migration to `databaseURL` (the owner's) and returns
    /// the versions applied; with `runtimeRole`, grants that role exactly what the module needs.
    static func migrate(
        databaseURL: String, runtimeRole: String? = nil, caFile: String? = nil, pooler: DatabasePooler = .none, logger: Logger
    ) async throws -> [Int] {
        if databaseURL.hasPrefix("sqlite:") {
            let store = try await SQLiteDatabase.open(path: String(databaseURL.dropFirst("sqlite:".count)), logger: logger)
            return try await store.migrate()
        }
        let configuration = try PostgresURL.configuration(databaseURL, caFile: caFile, pooler: pooler)
        return try await withClient(configuration, logger: logger) { client in
            let ran = try await PostgresMigrator.migrate(client, logger: logger)
            if let runtimeRole { try await PostgresMigrator.grantRuntime(client, role: runtimeRole, logger: logger) }
            return ran
        }
    }

    /// A short-lived pool for one task (migrations as the owner, a command-line run).
    static func withClient<T: Sendable>(
        _ configuration: PostgresClient.Configuration, logger: Logger, _ body: @escaping @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// Opens the store of `databaseURL` for a command-line task (migrated first), and closes it after.
    static func withStore<T: Sendable>(
        databaseURL: String, caFile: String? = nil, pooler: DatabasePooler = .none, logger: Logger,
        _ body: @escaping @Sendable (any ModuleStore) async throws -> T
    ) async throws -> T {
        if databaseURL.hasPrefix("sqlite:") {
            let store = try await SQLiteDatabase.open(path: String(databaseURL.dropFirst("sqlite:".count)), logger: logger)
            return try await body(store)
        }
        let client = PostgresClient(
            configuration: try PostgresURL.configuration(databaseURL, caFile: caFile, pooler: pooler),
            eventLoopGroup: SpreadEventLoopGroup(base: .singleton),
            backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            _ = try await PostgresMigrator.migrate(client, logger: logger)
            return try await body(PostgresDatabase(client: client, statements: pooler.statements, logger: logger, deadline: .seconds(30)))
        }
    }
}

/// Development only: applies the migrations once the database answers, when the bounded attempt
/// at start-up failed.
final class MigrationRetry: Service, Sendable {
    let pending = Atomic<Bool>(false)
    private let migrate: @Sendable () async throws -> [Int]
    private let client: PostgresClient
    private let logger: Logger
    private let schema: SchemaGate

    init(migrate: @escaping @Sendable () async throws -> [Int], client: PostgresClient, logger: Logger, schema: SchemaGate) {
        self.migrate = migrate
        self.client = client
        self.logger = logger
        self.schema = schema
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(5)) }
            guard pending.load(ordering: .relaxed), !Task.isShuttingDownGracefully else { continue }
            let client = client
            let logger = logger
            if let ran = try? await withDeadline(.seconds(10), migrate) {
                pending.store(false, ordering: .relaxed)
                logger.info("migrations applied after the database came back", metadata: ["versions": .string("\(ran)")])
                if let applied = try? await PostgresMigrator.applied(client, logger: logger) {
                    schema.update(applied: applied, known: Migrations.postgres.map(\.version))
                }
            }
        }
    }
}

import Foundation
import Logging
import NIOPosix
import SQLiteNIO

/// The module's SQLite database, an embedded file (the development default): the connection,
/// migrations and transactions (`transaction { … }`, `BEGIN IMMEDIATE`, against the deadline). One
/// connection behind an actor: SQLite has one writer anyway, and the connection's own thread pool
/// keeps I/O off event loops. Every use of the connection takes a FIFO turn (`exclusive`), so a
/// transaction never interleaves with another request's statements; `BEGIN IMMEDIATE` also orders
/// writers of other processes on the same file. SQLite has no row-level security: tenant work
/// filters on `tenant_id` in every statement. The repositories are extensions in their own files:
/// leads (`SQLiteLeads.swift`), the audit log, the outbox, timers.
actor SQLiteDatabase {
    private let connection: SQLiteConnection
    let deadline: Duration
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    private init(connection: SQLiteConnection, deadline: Duration) {
        self.connection = connection
        self.deadline = deadline
    }

    deinit {
        // sqlite-nio traps when a connection is released unclosed; the pending close keeps it alive until done.
        _ = connection.close()
    }

    /// Opens (creating the folder and file) and migrates.
    static func open(path: String, logger: Logger, deadline: Duration = .seconds(3)) async throws -> SQLiteDatabase {
        if path != ":memory:" {
            try FileManager.default.createDirectory(
                at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        }
        let connection = try await SQLiteConnection.open(storage: path == ":memory:" ? .memory : .file(path: path), logger: logger)
        _ = try await connection.query("PRAGMA journal_mode = WAL", [])
        _ = try await connection.query("PRAGMA busy_timeout = 2000", [])
        _ = try await connection.query("PRAGMA foreign_keys = ON", [])
        let store = SQLiteDatabase(connection: connection, deadline: deadline)
        _ = try await store.migrate()
        return store
    }

    private func acquire() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }

    /// Runs `body` with the connection to itself (FIFO).
    func exclusive<T: Sendable>(_ body: @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body(connection)
    }

    /// `body` inside `BEGIN IMMEDIATE … COMMIT` (rolled back when it throws), against the deadline.
    func transaction<T: Sendable>(
        _ body: @escaping @Sendable (SQLiteConnection) async throws -> T
    ) async throws(StoreUnavailable) -> T {
        // Never cancelled from outside: the ROLLBACK below always runs, so a stall past the deadline
        // cannot leave the connection inside BEGIN IMMEDIATE holding the write lock.
        try await withTransactionDeadline(deadline) { gate in
            try await self.exclusive { connection in
                try await Self.beginImmediate(connection, until: gate.end)
                do {
                    let result = try await body(connection)
                    try gate.beginCommit()
                    _ = try await connection.query("COMMIT", [])
                    return result
                } catch {
                    _ = try? await connection.query("ROLLBACK", [])
                    throw error
                }
            }
        }
    }

    /// `BEGIN IMMEDIATE`, retried while another connection holds the write lock: SQLite sometimes
    /// answers busy at once instead of calling the busy handler (seen with several connections on
    /// one file starting writes in the same millisecond), so `busy_timeout` alone is not enough.
    static func beginImmediate(_ connection: SQLiteConnection, until end: ContinuousClock.Instant) async throws {
        var pause = Duration.milliseconds(2)
        while true {
            do {
                _ = try await connection.query("BEGIN IMMEDIATE", [])
                return
            } catch let error as SQLiteError where error.reason == .busy && ContinuousClock.now + pause < end {
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(50))
            }
        }
    }

    /// The versions recorded in `schema_migrations`.
    func appliedVersions() async throws(StoreUnavailable) -> Set<Int> {
        Set(try await run("SELECT version FROM schema_migrations", []).compactMap { $0.column("version")?.integer })
    }

    /// Applies `Migrations.sqlite` in one immediate transaction; returns the versions it ran.
    func migrate() async throws -> [Int] {
        try await exclusive { connection in try await Self.migrate(connection) }
    }

    private static func migrate(_ connection: SQLiteConnection) async throws -> [Int] {
        _ = try await connection.query("BEGIN IMMEDIATE", [])
        do {
            _ = try await connection.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
                [])
            let applied = Set(try await connection.query("SELECT version FROM schema_migrations", []).compactMap {
                $0.column("version")?.integer
            })
            var ran: [Int] = []
            for migration in Migrations.sqlite where !applied.contains(migration.version) {
                for statement in migration.statements { _ = try await connection.query(statement, []) }
                _ = try await connection.query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [.integer(migration.version), .text(migration.name), .text(Timestamps.now())])
                ran.append(migration.version)
            }
            _ = try await connection.query("COMMIT", [])
            return ran
        } catch {
            _ = try? await connection.query("ROLLBACK", [])
            throw error
        }
    }

    func run(_ sql: String, _ binds: [SQLiteData]) async throws(StoreUnavailable) -> [SQLiteRow] {
        try await withDeadline(deadline) { try await self.exclusive { try await $0.query(sql, binds) } }
    }

    static func text(_ value: String?) -> SQLiteData { value.map { .text($0) } ?? .null }

    func permissionRows() async throws(StoreUnavailable) -> [(String, Bool, Bool)] {
        try await run("SELECT permission, read_only, step_up FROM module_permissions", []).compactMap { row in
            guard let name = row.column("permission")?.string, let readOnly = row.column("read_only")?.integer,
                let stepUp = row.column("step_up")?.integer
            else { return nil }
            return (name, readOnly != 0, stepUp != 0)
        }
    }

    /// Ready means able to take writes: the write lock is taken and given back at once (a
    /// connection stuck in a transaction, or another process holding the lock past `busy_timeout`,
    /// is not ready).
    func ping() async -> Bool {
        (try? await transaction { connection in
            try await connection.query("SELECT 1 AS one", []).first?.column("one")?.integer
        }) == 1
    }
}

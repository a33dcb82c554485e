import Foundation
import FunctionRuntime
import HTTPTypes
import Logging
import PostgresNIO
import SQLiteNIO
import Synchronization
import TestSupport
import Testing

@testable import Functions

/// How a database's failure becomes an answer (`StoreErrors.swift`, docs/api.md "What the database
/// refuses"): a refused value is 400, a serialization failure or deadlock is tried again inside the
/// deadline, only a dependency or the deadline failing is 503, anything else 500. Every error here is
/// a real one, raised by PostgreSQL or SQLite.
@Suite(.serialized) struct StoreFailureTests {
    final class Attempts: Sendable {
        private let count = Mutex(0)
        /// The number of this attempt (1 for the first).
        func next() -> Int { count.withLock { $0 += 1; return $0 } }
        var value: Int { count.withLock { $0 } }
    }

    static func raise(_ state: String, on connection: PostgresConnection) async throws {
        _ = try await connection.query(
            PostgresQuery(unsafeSQL: "DO $$ BEGIN RAISE EXCEPTION 'raised by the test' USING ERRCODE = '\(state)'; END $$"),
            logger: ScratchDatabase.logger)
    }

    /// Every SQLSTATE class the mapping names, raised by the server itself, read as the contract says.
    @Test func postgresErrorsAreReadByClass() async throws {
        let expected: [(String, StoreFailureKind, HTTPResponse.Status)] = [
            ("23505", .refused(field: nil), .badRequest), ("23514", .refused(field: nil), .badRequest),
            ("23502", .refused(field: nil), .badRequest), ("22001", .refused(field: nil), .badRequest),
            ("22P05", .refused(field: nil), .badRequest), ("22021", .refused(field: nil), .badRequest),
            ("40002", .refused(field: nil), .badRequest),
            ("40001", .retryable, .serviceUnavailable), ("40P01", .retryable, .serviceUnavailable),
            ("08006", .unavailable, .serviceUnavailable), ("53300", .unavailable, .serviceUnavailable),
            ("57014", .unavailable, .serviceUnavailable), ("57P01", .unavailable, .serviceUnavailable),
            ("58030", .unavailable, .serviceUnavailable), ("55P03", .unavailable, .serviceUnavailable),
            ("25006", .unavailable, .serviceUnavailable), ("40003", .unavailable, .serviceUnavailable),
            ("42883", .unavailable, .serviceUnavailable), ("0A000", .unavailable, .serviceUnavailable),
            ("XX000", .failed, .internalServerError), ("P0001", .failed, .internalServerError),
            ("55000", .failed, .internalServerError), ("25001", .failed, .internalServerError),
        ]
        try await withAuditStore(try TestServices.databaseURL()) { store in
            let postgres = try #require(store as? Functions.PostgresDatabase)
            for (state, kind, status) in expected {
                do {
                    try await postgres.client.withConnection { try await Self.raise(state, on: $0) }
                    Issue.record("\(state) was not raised")
                } catch {
                    let failure = StoreUnavailable(classifying: error)
                    #expect(failure.kind == kind, "\(state)")
                    #expect(failure.functionError.status == status, "\(state)")
                    #expect(failure.description == "postgres SQLSTATE \(state)", "no message, no values")
                    #expect(!failure.functionError.message.contains("raised by the test"), "no internals")
                }
            }
            // Inside a transaction (the error comes wrapped) the same reading, and 400's message names no internals.
            let wrapped = await storeFailure {
                try await postgres.withTenantTransaction("t-sf-wrapped".tenant) { try await Self.raise("23505", on: $0) }
            }
            #expect(wrapped?.functionError == .validationFailed("the request holds a value the database refuses"))
        }
        for malformed in ["", "2350", "23 05", "2350é", "235050"] {
            #expect(StoreUnavailable.kind(sqlState: malformed) == .failed, "\(malformed)")
        }
        #expect(StoreUnavailable(classifying: TransactionDeadline.Expired()).description == "timed out")
        #expect(StoreUnavailable(classifying: CancellationError()).functionError.status == .serviceUnavailable)
        let known = StoreUnavailable(description: "kept", kind: .refused(field: "notes"))
        #expect(StoreUnavailable(classifying: known).kind == .refused(field: "notes"))
        #expect(known.functionError == .validationFailed("field 'notes' holds a value the database refuses"))
    }

    /// The fields a database error may name: a lead's own, never another column, table or constraint.
    @Test func onlyALeadFieldIsNamed() {
        #expect(LeadColumns.field(table: "leads", column: nil, constraint: "leads_notes_check") == "notes")
        #expect(LeadColumns.field(table: nil, column: "email", constraint: nil) == "email")
        #expect(LeadColumns.field(table: "leads", column: "tenant_id", constraint: "leads_pkey") == nil)
        #expect(LeadColumns.field(table: "audit_events", column: nil, constraint: "leads_name_check") == nil)
        #expect(LeadColumns.field(table: "leads", column: nil, constraint: "leads__check") == nil)
        #expect(LeadColumns.field(table: "leads", column: nil, constraint: "leads_created_by_check") == nil)
        #expect(LeadColumns.field(table: nil, column: nil, constraint: nil) == nil)
        #expect(LeadColumns.field(sqliteMessage: "CHECK constraint failed: length(name) BETWEEN 1 AND 200") == "name")
        #expect(LeadColumns.field(sqliteMessage: "CHECK constraint failed: notes IS NULL OR length(notes) <= 10000") == "notes")
        #expect(LeadColumns.field(sqliteMessage: "NOT NULL constraint failed: leads.email") == "email")
        #expect(LeadColumns.field(sqliteMessage: "UNIQUE constraint failed: leads.tenant_id, leads.id") == nil)
        #expect(LeadColumns.field(sqliteMessage: "name without a colon") == nil)
    }

    /// SQLite's result codes read the same way: a constraint or a type is the client's, a held lock is
    /// unavailability, a statement SQLite cannot run is a bug.
    @Test func sqliteErrorsAreReadByKind() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-sf-\(UUID().uuidString).sqlite").path
        let store = try await SQLiteDatabase.open(path: path, logger: ScratchDatabase.logger)
        func failure(_ sql: String, _ binds: [SQLiteData] = []) async -> StoreUnavailable? {
            do {
                _ = try await store.exclusive { try await $0.query(sql, binds) }
                return nil
            } catch {
                return StoreUnavailable(classifying: error)
            }
        }
        let insert = "INSERT INTO leads (tenant_id, id, name, email, status, notes, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'u', 'c', 'u')"
        func row(id: String = "i", name: SQLiteData = .text("n"), status: String = "new", notes: SQLiteData = .null) -> [SQLiteData] {
            [.text("t-sf"), .text(id), name, .text("e@x.example"), .text(status), notes]
        }
        #expect(await failure(insert, row(name: .text(String(repeating: "e\u{301}", count: 100) + "x")))?.kind == .refused(field: "name"))
        #expect(await failure(insert, row(name: .null))?.kind == .refused(field: "name"))
        #expect(await failure(insert, row(status: "maybe"))?.kind == .refused(field: "status"))
        #expect(await failure(insert, row(notes: .text(String(repeating: "n", count: LeadLimits.notes + 1))))?.kind == .refused(field: "notes"))
        #expect(await failure(insert, row()) == nil)
        let duplicate = await failure(insert, row())
        #expect(duplicate?.kind == .refused(field: nil) && duplicate?.functionError.status == .badRequest)
        #expect(await failure("SELEC 1")?.kind == .failed)
        #expect(await failure("SELEC 1")?.functionError == .internalError)
        // Another connection holds the write lock of a (rollback-journal) file; this one waits for
        // nobody (`busy_timeout = 0` removes sqlite-nio's busy handler, which waits forever).
        let locked = path + "-locked"
        let holder = try await SQLiteConnection.open(storage: .file(path: locked), logger: ScratchDatabase.logger)
        let other = try await SQLiteConnection.open(storage: .file(path: locked), logger: ScratchDatabase.logger)
        _ = try await other.query("PRAGMA busy_timeout = 0", [])
        _ = try await holder.query("CREATE TABLE t (x INTEGER)", [])
        _ = try await holder.query("BEGIN IMMEDIATE", [])
        do {
            _ = try await other.query("BEGIN IMMEDIATE", [])
            Issue.record("the write lock was free")
        } catch {
            #expect(StoreUnavailable(classifying: error).kind == .unavailable)
            #expect(StoreUnavailable(classifying: error).functionError.status == .serviceUnavailable)
        }
        _ = try await holder.query("ROLLBACK", [])
        try await holder.close()
        try await other.close()
    }

    /// A deadlock or serialization failure runs the transaction (or the read) again inside the
    /// deadline; one that never stops is 503 at the deadline.
    @Test func aDeadlockOrSerializationFailureIsTriedAgainInsideTheDeadline() async throws {
        try await withAuditStore(try TestServices.databaseURL(), deadline: .seconds(5)) { store in
            let postgres = try #require(store as? Functions.PostgresDatabase)
            let client = postgres.client
            let writes = Attempts()
            let written = try await postgres.withTenantTransaction("t-sf-retry".tenant) { connection in
                if writes.next() == 1 { try await Self.raise("40P01", on: connection) }
                return 7
            }
            #expect(written == 7 && writes.value == 2)
            let reads = Attempts()
            let read = try await withDeadline(.seconds(5)) {
                try await client.withConnection { connection in
                    if reads.next() < 3 { try await Self.raise("40001", on: connection) }
                    return 8
                }
            }
            #expect(read == 8 && reads.value == 3)
            let deadline = Duration.milliseconds(300)
            let started = ContinuousClock.now
            let always = Attempts()
            let endless = await storeFailure {
                try await withTransactionDeadline(deadline) { _ in
                    _ = always.next()
                    try await client.withConnection { try await Self.raise("40001", on: $0) }
                }
            }
            #expect(endless?.functionError.status == .serviceUnavailable && endless?.description == "timed out")
            let endlessRead = await storeFailure {
                try await withDeadline(deadline) { try await client.withConnection { try await Self.raise("40P01", on: $0) } }
            }
            #expect(endlessRead?.functionError.status == .serviceUnavailable)
            #expect(always.value > 1, "tried again while time was left")
            #expect(ContinuousClock.now - started < .seconds(3), "answered at the deadline")
            // A failure that is not a conflict is not tried again.
            let once = Attempts()
            let refused = await storeFailure {
                try await postgres.withTenantTransaction("t-sf-retry".tenant) { connection in
                    _ = once.next()
                    try await Self.raise("23514", on: connection)
                }
            }
            #expect(refused?.functionError.status == .badRequest && once.value == 1)
        }
    }

    /// PostgreSQL answering the COMMIT with an error (a deferred constraint) means nothing was
    /// committed: the client's 400, not "the outcome is unknown".
    @Test func aCommitThePostgresRefusedIsNotAnUnknownOutcome() async throws {
        try await withAuditStore(try TestServices.databaseURL()) { store in
            let postgres = try #require(store as? Functions.PostgresDatabase)
            let failure = await storeFailure {
                try await postgres.withTenantTransaction("t-sf-commit".tenant) { connection in
                    let log = ScratchDatabase.logger
                    _ = try await connection.query("CREATE TEMP TABLE once (x int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP", logger: log)
                    _ = try await connection.query("INSERT INTO once VALUES (1), (1)", logger: log)
                }
            }
            let error = try #require(failure, "committed")
            #expect(!error.outcomeUnknown)
            #expect(error.kind == .refused(field: nil) && error.functionError.status == .badRequest)
        }
    }

    /// A repeated lead id (23505; SQLite's PRIMARY KEY constraint) is the client's 400 on both backends,
    /// in a batch and in a transaction with an idempotency key, and writes nothing.
    @Test(arguments: Backend.allCases)
    func aRepeatedLeadIdIs400NotA503(backend: Backend) async throws {
        try await withAuditStore(try backend.databaseURL()) { store in
            let tenant = "t-sf-dup-\(UUID().uuidString.prefix(6))"
            let lead = newLead(tenant)
            #expect(try await store.create(tenant: tenant.tenant, lead: lead, audit: record(tenant)) == .created)
            for key in [nil, "k-1"] {
                let idempotency = key.map { CreateIdempotency(key: $0, requestHash: "h", response: "{}") }
                let failure = await storeFailure {
                    try await store.create(tenant: tenant.tenant, lead: lead, audit: record(tenant), idempotency: idempotency)
                }
                let error = try #require(failure, "\(backend): a repeated id was created")
                #expect(error.functionError.status == .badRequest, "\(backend) \(key ?? "no key"): \(error.description)")
                #expect(error.functionError.code == "VALIDATION_FAILED")
            }
            #expect(try await chain(store, tenant).map(\.seq) == [1], "nothing more was written")
        }
    }

    /// Every limit the database enforces is the module's own (`LeadLimits`), counted as the database
    /// counts: at the limit, in multi-scalar characters, both accept; one scalar over, the module
    /// refuses first (400 naming the field) and the database would too (on both backends).
    @Test(arguments: Backend.allCases)
    func theModuleRefusesEveryValueTheDatabaseRefuses(backend: Backend) async throws {
        let decomposed = "e\u{301}"  // one character, two scalars
        let atLimit: [(String, String)] = [
            ("name", String(repeating: decomposed, count: LeadLimits.name / 2)),
            ("notes", String(repeating: decomposed, count: LeadLimits.notes / 2)),
        ]
        let overLimit: [(String, String)] = [
            ("name", String(repeating: decomposed, count: LeadLimits.name / 2) + "x"),
            ("notes", String(repeating: decomposed, count: LeadLimits.notes / 2) + "x"),
            ("name", ""),
            ("status", "maybe"),
            ("status", "NEW"),
        ]
        @Sendable func lead(_ tenant: String, _ field: String, _ value: String) -> Lead {
            var lead = newLead(tenant)
            switch field {
            case "name": lead.name = value
            case "notes": lead.notes = value
            default: lead.status = value
            }
            return lead
        }
        @Sendable func body(_ field: String, _ value: String) -> [UInt8] {
            var writer = JSONWriter()
            var object: [String: JSONValue] = ["name": .string("n"), "email": .string("n@x.example")]
            object[field] = .string(value)
            JSONValue.object(object).write(to: &writer)
            return writer.bytes
        }
        try await withAuditStore(try backend.databaseURL()) { store in
            let tenant = "t-sf-limits-\(UUID().uuidString.prefix(6))"
            for (field, value) in atLimit {
                #expect(LeadLimits.length(value) == (field == "name" ? LeadLimits.name : LeadLimits.notes) && value.count < LeadLimits.length(value))
                #expect(throws: Never.self) { try LeadFields.parse(body(field, value), creating: true) }
                #expect(try await store.create(tenant: tenant.tenant, lead: lead(tenant, field, value), audit: record(tenant)) == .created)
            }
            for (field, value) in overLimit {
                #expect(throws: FunctionError.self) { try LeadFields.parse(body(field, value), creating: true) }
                do throws(FunctionError) {
                    _ = try LeadFields.parse(body(field, value), creating: true)
                } catch {
                    #expect(error.status == .badRequest && error.message.contains("'\(field)'"), "\(error.message)")
                }
                let failure = await storeFailure {
                    try await store.create(tenant: tenant.tenant, lead: lead(tenant, field, value), audit: record(tenant))
                }
                let error = try #require(failure, "\(backend): the database took \(field) of \(LeadLimits.length(value)) scalars")
                #expect(error.kind == .refused(field: field), "\(backend) \(field): \(error.description)")
                #expect(error.functionError.status == .badRequest)
            }
            #expect(try await chain(store, tenant).count == atLimit.count, "the refused values wrote nothing")
        }
    }
}

/// The store's failure of `body`; nil when it succeeded (any other error is recorded as an issue).
func storeFailure<T>(_ body: () async throws -> T) async -> StoreUnavailable? {
    do {
        _ = try await body()
        return nil
    } catch let error as StoreUnavailable {
        return error
    } catch {
        Issue.record("not a store failure: \(error)")
        return nil
    }
}

import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import PostgresNIO
import Testing

@testable import Functions

/// What a deadline does to work in flight (docs/api.md: a 503 means nothing was changed).
@Suite(.serialized) struct DeadlineTests {
    /// Another process holds the SQLite write lock past the store's deadline, then lets go while the
    /// transaction is still waiting for it. The caller got 503 — and the change must not commit, the
    /// connection must not be left inside BEGIN IMMEDIATE, and the next write must succeed at once.
    @Test func aStallPastTheDeadlineLeavesSQLiteWritable() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-stall-\(UUID().uuidString).sqlite").path
        let store = try await SQLiteDatabase.open(path: path, logger: ScratchDatabase.logger, deadline: .milliseconds(700))
        let holder = try await offThePool { try LockHolder.sqlite(path: path, seconds: 1.5) }
        let tenant: TenantID = "t-stall"
        let first = newLead("t-stall")
        // Readiness asks while the lock is held (it takes the connection's turn first).
        async let readyDuringLock = store.ping()
        await #expect(throws: StoreUnavailable.self) { try await store.create(tenant: tenant, lead: first, audit: record("t-stall")) }
        #expect(await readyDuringLock == false, "not ready while writes cannot be taken")
        await offThePool { holder.waitUntilExit() }
        let second = newLead("t-stall")
        // Writable again (the old code failed every later write until restart). A loaded CI machine
        // missed the short deadline five times in a row once, so tries for up to 30 s; a connection
        // stuck in BEGIN never recovers, however long.
        let written = await eventually(timeout: .seconds(30), every: .milliseconds(100)) {
            (try? await store.create(tenant: tenant, lead: second, audit: record("t-stall"))) != nil
        }
        #expect(written, "writable again: no transaction or lock left behind")
        // Read back through a second connection with a generous deadline (the check is about what was committed).
        try await withAuditStore("sqlite:" + path) { reader in
            #expect(try await reader.get(tenant: tenant, id: first.id) == nil, "the 503 committed nothing")
            #expect(try await reader.get(tenant: tenant, id: second.id) != nil)
            let events = try await reader.auditEvents(AuditQuery(scope: .chain(.tenant(tenant)), limit: 10))
            #expect(events.count == 1, "one event, for the write that succeeded")
        }
        #expect(await eventually(timeout: .seconds(30), every: .milliseconds(100)) { await store.ping() })  // a loaded machine may miss a 700 ms deadline
    }

    /// Locks `tenant`'s chain head in another session for `duration` (returns once it is held): the
    /// tenant's next append waits on it.
    static func holdChainHead(_ tenant: String, on postgres: Functions.PostgresDatabase, for duration: Duration) async throws -> Task<Void, any Error> {
        let locked = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await postgres.client.withTransaction(logger: ScratchDatabase.logger) { connection in
                // Row-level security: the head row is visible in its tenant's scope only.
                try await connection.query("SELECT set_config('app.tenant_id', \(tenant), true)", logger: ScratchDatabase.logger)
                try await connection.query("SELECT seq FROM audit_chain_heads WHERE chain_id = \(tenant) FOR UPDATE", logger: ScratchDatabase.logger)
                locked.continuation.yield()
                try await Task.sleep(for: duration)
            }
        }
        for await _ in locked.stream { break }
        return holder
    }

    /// A create of `tenant` blocked on its chain head (locked 5 s by another session after a first
    /// create) answers 503 at the deadline, and nothing of it is committed once the lock goes away:
    /// the listing shows only the first lead and the log one `LEAD_CREATED`.
    static func blockedCreateCommitsNothing(
        _ client: any TestClientProtocol, token: String, tenant: String, on postgres: Functions.PostgresDatabase, key: String?
    ) async throws {
        #expect(try await client.send(.post, "/api/leads", token: token, json: #"{"name":"first","email":"f@b.example"}"#).status == .created)
        let holder = try await holdChainHead(tenant, on: postgres, for: .seconds(5))
        let started = ContinuousClock.now
        let body = #"{"name":"blocked","email":"b@b.example"}"#
        let blocked: Reply
        if let key {
            blocked = try await client.create(token: token, json: body, key: key)
        } else {
            blocked = try await client.send(.post, "/api/leads", token: token, json: body)
        }
        #expect(blocked.status == .serviceUnavailable && blocked.code == "SERVICE_UNAVAILABLE", "\(blocked.body)")
        #expect(!blocked.message.contains("unknown"), "nothing changed, and the answer says so")
        #expect(ContinuousClock.now - started < .milliseconds(4500), "answered at the deadline")
        try await holder.value
        let list = try await client.send(.get, "/api/leads", token: token)
        let names = (list.json["items"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(names == ["first"], "the 503 committed nothing, even after the lock went away")
        let audit = try await client.send(.get, "/api/audit?event_type=LEAD_CREATED", token: token)
        #expect((audit.json["items"] as? [Any])?.count == 1, "and appended no event")
    }

    /// The same for a create without an idempotency key, which is one statement (`fnhost_create_lead`):
    /// it bounds its own lock wait and fails itself past the deadline.
    @Test func aSingleStatementCreatePastTheDeadlineCommitsNothing() async throws {
        let url = try Backend.postgres.databaseURL()
        try await LeadsHarness.run(.postgres) { host, key, client in
            let tenant = "t-lock1-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "LEADS_WRITE", "AUDIT_READ"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            try await withAuditStore(url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                try await Self.blockedCreateCommitsNothing(client, token: token, tenant: tenant, on: postgres, key: nil)
                #expect(try await client.send(.post, "/api/leads", token: token, json: #"{"name":"after","email":"a@b.example"}"#).status == .created)
            }
        }
    }

    /// PostgreSQL: a lock held by another session past the deadline (a keyed create: the transaction
    /// path). The 503 must mean "not committed" even after the lock goes away, and no connection is
    /// left idle in transaction.
    @Test func aLockPastTheDeadlineCommitsNothingOnPostgres() async throws {
        let url = try Backend.postgres.databaseURL()
        try await LeadsHarness.run(.postgres) { host, key, client in
            let tenant = "t-lock-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "LEADS_WRITE", "AUDIT_READ"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            try await withAuditStore(url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                try await Self.blockedCreateCommitsNothing(client, token: token, tenant: tenant, on: postgres, key: "k-lock")
                let idle = try await postgres.client.query(
                    """
                    SELECT count(*)::int FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'
                      AND application_name = 'fnhost' AND state_change < now() - interval '2 seconds'
                    """,
                    logger: ScratchDatabase.logger
                ).decode(Int.self).reduce(0, +)
                #expect(idle == 0, "no connection left idle in transaction")
                let after = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"after","email":"a@b.example"}"#)
                #expect(after.status == .created)
                // The client retries the 503 with its key: exactly one lead and one event, and a lost
                // answer retried again gets the same 201.
                let retried = try await client.create(token: token, json: #"{"name":"blocked","email":"b@b.example"}"#, key: "k-lock")
                #expect(retried.status == .created)
                let lost = try await client.create(token: token, json: #"{"name":"blocked","email":"b@b.example"}"#, key: "k-lock")
                #expect(lost.status == .created && lost.body == retried.body)
                let final = try await client.send(.get, "/api/leads?limit=10", token: token)
                let finalNames = (final.json["items"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted()
                #expect(finalNames == ["after", "blocked", "first"])
                let created = try await client.send(.get, "/api/audit?event_type=LEAD_CREATED", token: token)
                #expect((created.json["items"] as? [Any])?.count == 3)
            }
        }
    }

    /// A client retries a create with the same key: one lead, one event, the same answer; another
    /// body with the key is 422; keys belong to their tenant.
    @Test(arguments: Backend.allCases)
    func createsAreIdempotentPerTenant(backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let tenantA = "t-idem-a-\(UUID().uuidString.prefix(6))"
            let tenantB = "t-idem-b-\(UUID().uuidString.prefix(6))"
            for tenant in [tenantA, tenantB] {
                await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "LEADS_WRITE", "AUDIT_READ"])
            }
            let a = try LeadsHarness.token(key, tenant: tenantA, user: "u")
            let b = try LeadsHarness.token(key, tenant: tenantB, user: "u")
            let body = #"{"name":"Ada","email":"ada@a.example"}"#
            let first = try await client.create(token: a, json: body, key: "retry-1")
            #expect(first.status == .created)
            let again = try await client.create(token: a, json: #"{ "email":"ada@a.example", "name":"Ada" }"#, key: "retry-1")
            #expect(again.status == .created)
            #expect(again.body == first.body, "the same answer")
            #expect(again.headers[.location] == first.headers[.location])
            let reused = try await client.create(token: a, json: #"{"name":"Bob","email":"ada@a.example"}"#, key: "retry-1")
            #expect(reused.status == .unprocessableContent && reused.code == "IDEMPOTENCY_KEY_REUSED")
            // Concurrent retries with one key: still one lead.
            try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<6 { group.addTask { try await client.create(token: a, json: body, key: "retry-2").status } }
                for try await status in group { #expect(status == .created) }
            }
            // Tenant B's same key is B's own.
            let other = try await client.create(token: b, json: body, key: "retry-1")
            #expect(other.status == .created)
            #expect(other.json["id"] as? String != first.json["id"] as? String)
            let leadsA = try await client.send(.get, "/api/leads", token: a)
            #expect((leadsA.json["items"] as? [Any])?.count == 2, "one lead per key in A")
            let leadsB = try await client.send(.get, "/api/leads", token: b)
            #expect((leadsB.json["items"] as? [Any])?.count == 1)
            let events = try await client.send(.get, "/api/audit?event_type=LEAD_CREATED", token: a)
            #expect((events.json["items"] as? [Any])?.count == 2, "one event per lead")
            let bad = try await client.create(token: a, json: body, key: "has space")
            #expect(bad.status == .badRequest)
        }
    }
}

extension TestClientProtocol {
    func create(token: String, json: String, key: String) async throws -> Reply {
        let headers: HTTPFields = [
            .authorization: "Bearer \(token)", .contentType: "application/json", HTTPField.Name("Idempotency-Key")!: key,
        ]
        return try await execute(uri: "/api/leads", method: .post, headers: headers, body: ByteBuffer(string: json)) {
            Reply(status: $0.status, headers: $0.headers, body: String(buffer: $0.body))
        }
    }
}

/// Runs blocking work (waiting for a process, reading its pipe) on a Dispatch thread: the
/// cooperative pool has as many threads as cores (2 here), and a test blocking one stalls every
/// other test's async work.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

func offThePool(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            body()
            continuation.resume()
        }
    }
}

/// Another process holding the SQLite write lock for a while (python3's sqlite3).
struct LockHolder: @unchecked Sendable {
    let process: Process

    static func sqlite(path: String, seconds: Double) throws -> LockHolder {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN IMMEDIATE'); "
                + "print('locked', flush=True); time.sleep(float(sys.argv[2])); c.execute('ROLLBACK')",
            path, String(seconds),
        ]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // Wait for the lock to be held before the test goes on.
        let handle = output.fileHandleForReading
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("locked") {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
        }
        return LockHolder(process: process)
    }

    /// Polled (Foundation's `waitUntilExit` spins on Linux off the main thread).
    func waitUntilExit() { while process.isRunning { usleep(10_000) } }
}

@Suite struct AbandonedExportTests {
    /// The client reads a little of a large export and closes the socket: `EXPORT_EXECUTED` is still
    /// appended, with `completed: false` and fewer rows than the tenant has.
    @Test func anAbandonedExportIsAudited() async throws {
        let url = try Backend.sqlite.databaseURL()
        let tenant = "t-abandon-\(UUID().uuidString.prefix(6))"
        let total = 1500
        try await withAuditStore(url) { _ in }  // migrated
        // One bulk transaction (python3's sqlite3): 1,500 separate commits would fsync 1,500 times.
        let seeded = try await runProgram("/usr/bin/env", [
            "python3", "-c",
            """
            import sqlite3,sys,uuid
            c=sqlite3.connect(sys.argv[1]); n='n'*8000
            rows=[(sys.argv[2], str(uuid.uuid4()), 'n', 'n@x.example', None, None, 'new', n, 'u', '2026-12-01T10:00:00.%06dZ' % i, '2026-12-01T10:00:00.%06dZ' % i) for i in range(int(sys.argv[3]))]
            c.executemany('INSERT INTO leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)', rows)
            c.commit()
            """,
            String(url.dropFirst("sqlite:".count)), tenant, String(total),
        ])
        #expect(seeded.status == 0, "\(seeded.output)")
        try await LeadsHarness.run(databaseURL: url) { host, key, client in
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "EXPORTS_EXECUTE", "AUDIT_READ"], mfa: true)
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            let port = try #require(client.port)
            // A raw client: send the request, read 64 KiB of the ~12 MB answer, close.
            let read = try await runProgram("/usr/bin/env", [
                "python3", "-c",
                """
                import socket,sys
                s=socket.create_connection(('127.0.0.1', int(sys.argv[1])))
                s.sendall(('POST /api/exports/leads HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer '+sys.argv[2]+'\\r\\nContent-Length: 0\\r\\n\\r\\n').encode())
                got=0
                while got < 65536:
                    chunk=s.recv(65536)
                    if not chunk: break
                    got+=len(chunk)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00')
                s.close()
                print(got)
                """,
                String(port), token,
            ])
            #expect(read.status == 0, "\(read.output)")
            var event: [String: Any]?
            for _ in 0..<100 {
                let audit = try await FreshConnection.send(port: port, .get, "/api/audit?event_type=EXPORT_EXECUTED", token: token)
                event = (audit.json["items"] as? [[String: Any]])?.first
                if event != nil { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let details = try #require(event?["details"] as? [String: Any], "EXPORT_EXECUTED appended after the client went away")
            #expect(details["completed"] as? Bool == false)
            let rows = try #require(details["rows"] as? Int)
            #expect(rows < total, "the rows sent, not the tenant's count")
            // A complete export says so.
            let full = try await FreshConnection.send(port: port, .post, "/api/exports/leads", token: token)
            #expect(full.status == .ok)
            let audit = try await FreshConnection.send(port: port, .get, "/api/audit?event_type=EXPORT_EXECUTED", token: token)
            let newest = (audit.json["items"] as? [[String: Any]])?.first?["details"] as? [String: Any]
            #expect(newest?["completed"] as? Bool == true && newest?["rows"] as? Int == total)
        }
    }
}

/// Exports on PostgreSQL over several pages (6,000 rows of ~2 KB, 500 per page — small pages, so a
/// loaded CI machine reads each well inside the 3 s deadline; 12 MB, more than loopback socket buffers
/// hold, so the export is still mid-stream when the reader pauses): complete, every
/// row exactly once; and cut by a database failure mid-stream (the leads table locked away from
/// the export between two pages, so its next page misses the deadline): the response ends without
/// its terminating chunk and `EXPORT_EXECUTED` says `completed: false` with exactly the rows sent.
@Suite struct PostgresExportTests {
    static let reader = """
        import socket,sys,os,time
        s=socket.create_connection(('127.0.0.1', int(sys.argv[1])))
        s.sendall(('POST /api/exports/leads HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer '+sys.argv[2]+'\\r\\nContent-Length: 0\\r\\n\\r\\n').encode())
        data=b''
        while len(data) < 65536:
            chunk=s.recv(65536)
            if not chunk: break
            data+=chunk
        open(sys.argv[3]+'.ready','w').close()
        while not os.path.exists(sys.argv[3]+'.go'): time.sleep(0.02)
        s.settimeout(60)
        while True:
            chunk=s.recv(1<<20)
            if not chunk: break
            data+=chunk
        print(data.count(b'@x.example'), data.endswith(b'\\r\\n0\\r\\n\\r\\n'))
        """

    @Test func severalPagesAndADatabaseFailureMidStream() async throws {
        try await ScratchDatabase.with { database in
            let tenant = "t-export-\(UUID().uuidString.prefix(6))"
            let total = 6000
            _ = try await withAuditStore(database.url) { _ in 0 }  // migrated
            try await ScratchDatabase.superuser(database.adminURL) { client in
                _ = try await client.query(
                    """
                    INSERT INTO leads (tenant_id, id, name, email, status, notes, created_by, created_at, updated_at)
                    SELECT \(tenant), gen_random_uuid(), 'n' || i, 'row' || i || '@x.example', 'new', repeat('n', 2000), 'u',
                           now() - (i || ' milliseconds')::interval, now()
                    FROM generate_series(1, \(total)) AS i
                    """, logger: ScratchDatabase.logger)
            }
            try await LeadsHarness.run(databaseURL: database.url) { host, key, client in
                await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "EXPORTS_EXECUTE", "AUDIT_READ"], mfa: true)
                let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
                let port = try #require(client.port)
                func newestExport() async throws -> [String: Any]? {
                    let audit = try await FreshConnection.send(port: port, .get, "/api/audit?event_type=EXPORT_EXECUTED", token: token)
                    return (audit.json["items"] as? [[String: Any]])?.first?["details"] as? [String: Any]
                }
                // Complete: twelve pages, every row once.
                let full = try await FreshConnection.send(port: port, .post, "/api/exports/leads", token: token)
                #expect(full.status == .ok)
                let lines = full.body.split(separator: "\r\n", omittingEmptySubsequences: true)
                // On bytes: "\r\n" is one Character, so dropLast(2) would eat a letter.
                #expect(lines.first.map { Array($0.utf8) } == Array(Lead.csvHeader.utf8.dropLast(2)))
                let emails = lines.dropFirst().compactMap { $0.split(separator: ",").first { $0.hasSuffix("@x.example") } }
                #expect(emails.count == total)
                #expect(Set(emails).count == total, "no row twice")
                let completed = try #require(try await newestExport())
                #expect(completed["completed"] as? Bool == true && completed["rows"] as? Int == total)

                // Cut mid-stream.
                let base = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-export-\(UUID().uuidString)").path
                let reading = Task {
                    try await runProgram("/usr/bin/env", ["python3", "-c", Self.reader, String(port), token, base])
                }
                #expect(await eventually(timeout: .seconds(20)) { FileManager.default.fileExists(atPath: base + ".ready") })
                let admin = PostgresClient(configuration: try PostgresURL.configuration(database.adminURL), backgroundLogger: ScratchDatabase.logger)
                let outcome: (status: Int32, output: String) = try await withThrowingTaskGroup(of: (Int32, String)?.self) { group in
                    group.addTask {
                        await admin.run()
                        return nil
                    }
                    defer { group.cancelAll() }
                    return try await admin.withConnection { connection in
                        _ = try await connection.query("BEGIN", logger: ScratchDatabase.logger)
                        _ = try await connection.query("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE", logger: ScratchDatabase.logger)
                        _ = FileManager.default.createFile(atPath: base + ".go", contents: nil)
                        let result = try await reading.value
                        _ = try await connection.query("ROLLBACK", logger: ScratchDatabase.logger)
                        return result
                    }
                }
                try? FileManager.default.removeItem(atPath: base + ".ready")
                try? FileManager.default.removeItem(atPath: base + ".go")
                #expect(outcome.status == 0, "\(outcome.output)")
                let parts = outcome.output.split(separator: " ")
                let received = try #require(parts.first.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }, "\(outcome.output)")
                #expect(parts.last?.trimmingCharacters(in: .whitespacesAndNewlines) == "False", "no terminating chunk: the client knows it is cut")
                let cut = try #require(await eventually(timeout: .seconds(10)) {
                    (try? await newestExport())?["completed"] as? Bool == false
                } ? try await newestExport() : nil, "EXPORT_EXECUTED appended for the cut export")
                let rows = try #require(cut["rows"] as? Int)
                #expect(rows < total && rows % ExportLeads.pageSize == 0, "whole pages: \(rows)")
                #expect(received == rows, "the audited count is what the client got")
            }
        }
    }
}

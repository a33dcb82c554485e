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

enum Backend: String, CaseIterable, Sendable {
    case postgres, sqlite

    func databaseURL() throws -> String {
        switch self {
        case .postgres:
            return try TestServices.databaseURL()
        case .sqlite:
            return "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-leads-\(UUID().uuidString).sqlite").path
        }
    }
}

/// The real module (function.json of the repository) against a stand-in host and a real database.
enum LeadsHarness {
    static func run(
        _ backend: Backend, extra: [String: String] = [:],
        _ test: @escaping @Sendable (StandInHost, TestKey, any TestClientProtocol) async throws -> Void
    ) async throws {
        let database = try backend.databaseURL()
        _ = try await StoreSetup.migrate(databaseURL: database, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        try await run(databaseURL: database, extra: extra, test)
    }

    /// A fresh script root holding the repository's function.json.
    static func scriptRoot() throws -> URL { URL(fileURLWithPath: try ScriptRoot.repository()) }

    /// The module host on `databaseURL` as it is (no migration), with a stand-in identity host.
    static func run(
        databaseURL: String, extra: [String: String] = [:],
        _ test: @escaping @Sendable (StandInHost, TestKey, any TestClientProtocol) async throws -> Void
    ) async throws {
        let key = try TestKey.make(kid: "k1")
        let root = try scriptRoot()
        let host = StandInHost()
        await host.state.set(keys: [key])
        try await host.application().test(.live) { hostClient in
            let settings = IdentityHarness.hostSettings(hostClient.port ?? 0, extra: ["DATABASE_URL": databaseURL].merging(extra) { $1 })
            let functionHost = try await FunctionHost.build(
                options: .init(scriptRoot: root.path, port: 0), module: FunctionHostModule(), environment: settings,
                logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
            try await functionHost.application().test(.live) { client in
                try await test(host, key, client)
            }
        }
    }

    static func grant(_ host: StandInHost, tenant: String, user: String, _ permissions: [String], mfa: Bool = false) async {
        await host.state.set(answer: RBACAnswer(
            tenantID: tenant, userID: user, permissions: permissions, ttlSeconds: 300, assurance: .init(mfa: mfa, level: nil)))
    }

    static func token(_ key: TestKey, tenant: String, user: String) throws -> String {
        try Tokens.make(Tokens.claims(tenant: tenant, sub: user), signing: .rs256(key))
    }
}

struct Reply: Sendable {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let body: String

    var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]) ?? [:] }
    var code: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var message: String { ((json["error"] as? [String: Any])?["message"] as? String) ?? "" }
}

/// One request on a connection of its own, for requests after a long wait: a keep-alive connection
/// left idle past the server's idle timeout (75 s) is closed under it, and a loaded CI machine once took
/// that long running a test's helper program (`I/O on closed channel` on the next request).
enum FreshConnection {
    static func send(port: Int, _ method: HTTPRequest.Method, _ uri: String, token: String) async throws -> Reply {
        try await TestClient.withClient(host: "localhost", port: port, configuration: .init(timeout: .seconds(60))) { client in
            let response = try await client.execute(
                .init(uri, method: method, authority: "localhost", headers: [.authorization: "Bearer \(token)", .connection: "close"]))
            return Reply(status: response.status, headers: response.headers, body: response.body.map { String(buffer: $0) } ?? "")
        }
    }
}

extension TestClientProtocol {
    func send(
        _ method: HTTPRequest.Method, _ uri: String, token: String, json: String? = nil, contentType: String = "application/json"
    ) async throws -> Reply {
        var headers: HTTPFields = [.authorization: "Bearer \(token)"]
        if json != nil { headers[.contentType] = contentType }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) }) {
            Reply(status: $0.status, headers: $0.headers, body: String(buffer: $0.body))
        }
    }
}

@Suite(.serialized) struct LeadsTests {
    static let everything = ["LEADS_READ", "LEADS_WRITE", "LEADS_DELETE", "EXPORTS_EXECUTE"]

    @Test(arguments: Backend.allCases)
    func crudAndExportStayInsideTheTenant(backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let tenantA = "t-a-\(UUID().uuidString.prefix(6))"
            let tenantB = "t-b-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenantA, user: "u-a", Self.everything, mfa: true)
            await LeadsHarness.grant(host, tenant: tenantB, user: "u-b", Self.everything, mfa: true)
            let a = try LeadsHarness.token(key, tenant: tenantA, user: "u-a")
            let b = try LeadsHarness.token(key, tenant: tenantB, user: "u-b")

            let created = try await client.send(
                .post, "/api/leads", token: a,
                json: #"{"name":"Ada \"Countess\", Lovelace","email":"ada@acme.example","phone":"+44 1","notes":"=HYPERLINK(\"x\")\nline","tenant_id":"\#(tenantB)"}"#)
            #expect(created.status == .created)
            let leadA = try #require(created.json["id"] as? String)
            #expect(created.json["status"] as? String == "new")
            #expect(created.json["created_by"] as? String == "u-a")
            #expect(created.headers[.location] == "/api/leads/\(leadA)")
            let createdB = try await client.send(.post, "/api/leads", token: b, json: #"{"name":"Bob","email":"bob@b.example","status":"won"}"#)
            let leadB = try #require(createdB.json["id"] as? String)

            let listA = try await client.send(.get, "/api/leads", token: a)
            let itemsA = try #require(listA.json["items"] as? [[String: Any]])
            #expect(itemsA.map { $0["id"] as? String } == [leadA], "the body's tenant_id was ignored; B's lead is invisible")
            #expect(listA.json["next_cursor"] is NSNull)

            #expect(try await client.send(.get, "/api/leads/\(leadB)", token: a).status == .notFound)
            #expect(try await client.send(.patch, "/api/leads/\(leadB)", token: a, json: #"{"status":"lost"}"#).status == .notFound)
            #expect(try await client.send(.delete, "/api/leads/\(leadB)", token: a).status == .notFound)
            let stillB = try await client.send(.get, "/api/leads/\(leadB)", token: b)
            #expect(stillB.status == .ok)
            #expect(stillB.json["status"] as? String == "won", "A's update did not touch B's lead")

            let updated = try await client.send(.patch, "/api/leads/\(leadA)", token: a, json: #"{"status":"qualified","company":null}"#)
            #expect(updated.status == .ok)
            #expect(updated.json["status"] as? String == "qualified")
            #expect(updated.json["name"] as? String == #"Ada "Countess", Lovelace"#)
            #expect((updated.json["updated_at"] as? String ?? "") > (created.json["updated_at"] as? String ?? ""))

            let export = try await client.send(.post, "/api/exports/leads", token: a)
            #expect(export.status == .ok)
            #expect(export.headers[.contentType] == "text/csv; charset=utf-8")
            let lines = export.body.components(separatedBy: "\r\n")
            #expect(lines.first == "id,name,email,phone,company,status,notes,created_by,created_at,updated_at")
            #expect(export.body.contains(#""Ada ""Countess"", Lovelace""#))
            #expect(export.body.contains("\"'=HYPERLINK(\"\"x\"\")\nline\""), "formula escaped, then quoted")
            #expect(export.body.contains("'+44 1"))
            #expect(!export.body.contains(leadB) && !export.body.contains("Bob"))

            #expect(try await client.send(.delete, "/api/leads/\(leadA)", token: a).status == .noContent)
            #expect(try await client.send(.get, "/api/leads/\(leadA)", token: a).status == .notFound)
            #expect(try await client.send(.get, "/api/leads/\(leadB)", token: b).status == .ok)
        }
    }

    @Test(arguments: Backend.allCases)
    func paginationIsNewestFirstWithoutGapsOrRepeats(backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let tenant = "t-p-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "LEADS_WRITE"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            var createdIDs: [String] = []
            for index in 0..<7 {
                let reply = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"L\#(index)","email":"l\#(index)@x.example"}"#)
                createdIDs.append(try #require(reply.json["id"] as? String))
            }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let uri = "/api/leads?limit=3" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await client.send(.get, uri, token: token)
                #expect(page.status == .ok)
                seen += (page.json["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                cursor = page.json["next_cursor"] as? String
                pages += 1
            } while cursor != nil && pages < 10
            #expect(pages == 3)
            #expect(seen == Array(createdIDs.reversed()))
        }
    }

    @Test(arguments: Backend.allCases)
    func badInputIsRejectedNamingTheFieldAndChangesNothing(backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let tenant = "t-v-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "LEADS_WRITE", "LEADS_DELETE"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            let cases: [(String, String)] = [
                (#"{"name":"A","email":"a@b.example","owner":"x"}"#, "'owner'"),
                (#"{"email":"a@b.example"}"#, "'name'"),
                (#"{"name":"","email":"a@b.example"}"#, "'name'"),
                (#"{"name":"\#(String(repeating: "n", count: 201))","email":"a@b.example"}"#, "'name'"),
                (#"{"name":"A","email":"not-an-email"}"#, "'email'"),
                (#"{"name":"A","email":"a@b.example","status":"maybe"}"#, "'status'"),
                (#"{"name":"A","email":"a@b.example","notes":"\#(String(repeating: "n", count: 10_001))"}"#, "'notes'"),
                (#"{"name":42,"email":"a@b.example"}"#, "'name'"),
                (#"{"name":"A","email":"a@b.example""#, "JSON"),
                (#"["name"]"#, "object"),
            ]
            for (body, field) in cases {
                let reply = try await client.send(.post, "/api/leads", token: token, json: body)
                #expect(reply.status == .badRequest, "\(body.prefix(60))")
                #expect(reply.code == "VALIDATION_FAILED")
                #expect(reply.message.contains(field), "\(reply.message)")
            }
            let wrongType = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"A","email":"a@b.example"}"#, contentType: "text/plain")
            #expect(wrongType.status == .unsupportedMediaType)
            #expect(wrongType.code == "UNSUPPORTED_MEDIA_TYPE")
            for uri in ["/api/leads?limit=0", "/api/leads?limit=201", "/api/leads?limit=x", "/api/leads?cursor=!!",
                        "/api/leads?cursor=12345678901234567_\(UUID().uuidString)", "/api/leads/not-a-uuid"] {
                #expect(try await client.send(.get, uri, token: token).status == .badRequest, "\(uri)")
            }
            #expect(try await client.send(.get, "/api/leads/\(UUID().uuidString.lowercased())", token: token).status == .notFound)
            #expect(try await client.send(.patch, "/api/leads/\(UUID().uuidString.lowercased())", token: token, json: "{}").status == .notFound)
            let list = try await client.send(.get, "/api/leads", token: token)
            #expect((list.json["items"] as? [Any])?.isEmpty == true, "nothing was written")
        }
    }

    /// A length is counted in Unicode scalars, as the database counts, on both backends: a name of 151
    /// characters but 301 scalars is 400 naming `name` (it was 503 "the database is unavailable": the
    /// module counted characters, the database scalars) and nothing is stored; exactly 200 scalars of
    /// two-scalar characters, and notes of exactly 10,000, are created and read back byte for byte.
    @Test(arguments: Backend.allCases)
    func lengthsAreCountedInUnicodeScalarsOnEveryBackend(backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let tenant = "t-len-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "LEADS_WRITE"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            let decomposed = "e\u{301}"  // one character, two scalars
            let name151 = String(repeating: decomposed, count: 150) + "x"
            #expect(name151.count == 151 && name151.unicodeScalars.count == 301)
            let over: [(String, String)] = [
                (#"{"name":"\#(name151)","email":"a@b.example"}"#, "'name'"),
                (#"{"name":"\#(String(repeating: decomposed, count: 100))x","email":"a@b.example"}"#, "'name'"),
                (#"{"name":"A","email":"a@b.example","notes":"\#(String(repeating: decomposed, count: 5_000))x"}"#, "'notes'"),
                (#"{"name":"A","email":"a@b.example","phone":"\#(String(repeating: decomposed, count: 25))x"}"#, "'phone'"),
                (#"{"name":"A","email":"a@b.example","company":"\#(String(repeating: decomposed, count: 100))x"}"#, "'company'"),
            ]
            for (body, field) in over {
                let reply = try await client.send(.post, "/api/leads", token: token, json: body)
                #expect(reply.status == .badRequest, "\(backend) \(field): \(reply.status) \(reply.message)")
                #expect(reply.code == "VALIDATION_FAILED" && reply.message.contains(field), "\(reply.message)")
            }
            let empty = try await client.send(.get, "/api/leads", token: token)
            #expect((empty.json["items"] as? [Any])?.isEmpty == true, "nothing was stored")

            let name200 = String(repeating: decomposed, count: 100)
            let notes10000 = String(repeating: decomposed, count: 5_000)
            let created = try await client.send(
                .post, "/api/leads", token: token, json: #"{"name":"\#(name200)","email":"a@b.example","notes":"\#(notes10000)"}"#)
            #expect(created.status == .created, "\(backend): \(created.message)")
            let id = try #require(created.json["id"] as? String)
            let read = try await client.send(.get, "/api/leads/\(id)", token: token)
            #expect((read.json["name"] as? String).map { Array($0.utf8) } == Array(name200.utf8))
            #expect((read.json["notes"] as? String).map { Array($0.utf8) } == Array(notes10000.utf8))
            let patched = try await client.send(.patch, "/api/leads/\(id)", token: token, json: #"{"name":"\#(name151)"}"#)
            #expect(patched.status == .badRequest && patched.message.contains("'name'"), "\(patched.status) \(patched.message)")
            let after = try await client.send(.get, "/api/leads/\(id)", token: token)
            #expect((after.json["name"] as? String).map { Array($0.utf8) } == Array(name200.utf8), "the update changed nothing")
        }
    }

    @Test func permissionsAndStepUpGuardTheEndpoints() async throws {
        try await LeadsHarness.run(.sqlite) { host, key, client in
            let tenant = "t-g-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "reader", ["LEADS_READ"])
            await LeadsHarness.grant(host, tenant: tenant, user: "writer", ["LEADS_READ", "LEADS_WRITE", "LEADS_DELETE", "EXPORTS_EXECUTE"])
            let reader = try LeadsHarness.token(key, tenant: tenant, user: "reader")
            let writer = try LeadsHarness.token(key, tenant: tenant, user: "writer")
            #expect(try await client.send(.get, "/api/leads", token: reader).status == .ok)
            let denied = try await client.send(.post, "/api/leads", token: reader, json: #"{"name":"A","email":"a@b.example"}"#)
            #expect(denied.status == .forbidden)
            #expect(denied.code == "PERMISSION_DENIED")
            let created = try await client.send(.post, "/api/leads", token: writer, json: #"{"name":"A","email":"a@b.example"}"#)
            let id = try #require(created.json["id"] as? String)
            let delete = try await client.send(.delete, "/api/leads/\(id)", token: writer)
            #expect(delete.status == .forbidden)
            #expect(delete.code == "STEP_UP_REQUIRED")
            #expect(delete.headers[.wwwAuthenticate] == #"Bearer error="insufficient_user_authentication""#)
            #expect(try await client.send(.post, "/api/exports/leads", token: writer).code == "STEP_UP_REQUIRED")
            let mfa = try Tokens.make(
                Tokens.claims(tenant: tenant, sub: "writer", extra: ["amr": .array([.string("mfa")])]), signing: .rs256(key))
            #expect(try await client.send(.delete, "/api/leads/\(id)", token: mfa).status == .noContent)
        }
    }

    @Test func databaseOutageAnswers503QuicklyAndReadinessSaysSo() async throws {
        try await LeadsHarness.run(databaseURL: "postgres://fnhost:x@127.0.0.1:1/fnhost?sslmode=disable") { host, key, client in
            await LeadsHarness.grant(host, tenant: "t-acme", user: "u", ["LEADS_READ"])
            let started = ContinuousClock.now
            let reply = try await client.send(.get, "/api/leads", token: try LeadsHarness.token(key, tenant: "t-acme", user: "u"))
            #expect(reply.status == .serviceUnavailable)
            #expect(reply.code == "SERVICE_UNAVAILABLE")
            #expect(ContinuousClock.now - started < .seconds(10), "bounded by the 3 s deadline, with room for a loaded machine")
            let ready = try await client.execute(uri: "/health/ready", method: .get) { $0.status }
            #expect(ready == .serviceUnavailable)
        }
    }

    /// Stale statistics cannot make a listing sort the tenant's rows: in a fresh database with 6,000
    /// leads bulk-inserted and never analyzed, the plan PostgreSQL runs inside `fnhost_leads_json`
    /// `fnhost_leads_page`, `fnhost_leads_json_page` and both pages of `fnhost_leads_json_pages` (auto_explain, nested
    /// statements) walks leads_tenant_newest
    /// with no Sort node — the listing functions run with sorts off (migration 9). Without it this
    /// plan sorted every row of the tenant, and plpgsql kept it for the connection (184 listings/s).
    @Test func listingsWalkTheIndexWhateverTheStatistics() async throws {
        try await ScratchDatabase.with { database in
            _ = try await withAuditStore(database.url) { _ in 0 }  // migrated
            try await ScratchDatabase.superuser(database.adminURL) { client in
                _ = try await client.query(
                    """
                    INSERT INTO leads (tenant_id, id, name, email, status, created_by, created_at, updated_at)
                    SELECT CASE WHEN i % 3 = 0 THEN 't-other' ELSE 't-big' END, gen_random_uuid(), 'n' || i, 'e' || i || '@x.example',
                           'new', 'u', now() - (i || ' ms')::interval, now()
                    FROM generate_series(1, 9000) AS i
                    """, logger: ScratchDatabase.logger)
            }
            let script = """
                LOAD 'auto_explain';
                SET auto_explain.log_min_duration = 0;
                SET auto_explain.log_nested_statements = on;
                SET auto_explain.log_level = notice;
                SET client_min_messages = notice;
                SELECT count(*) FROM fnhost_leads_json('t-big', 20, NULL, NULL);
                SELECT count(*) FROM fnhost_leads_page('t-big', 20, now(), '00000000-0000-0000-0000-000000000000');
                SELECT count(*) FROM fnhost_leads_json_page('t-big', 20, NULL, NULL);
                SELECT count(*) FROM fnhost_leads_json_pages(ARRAY['t-big', 't-big'], ARRAY[20, 5]::bigint[], ARRAY['', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')], ARRAY['', '00000000-0000-0000-0000-000000000000']);
                """
            let run = try await runProgram("/usr/bin/env", ["psql", database.adminURL, "-X", "-v", "ON_ERROR_STOP=1", "-c", script])
            #expect(run.status == 0, "\(run.output)")
            // Each function's inner query is explained once; the outer SELECTs are function scans.
            let nested = run.output.components(separatedBy: "Query Text:").filter { $0.contains("FROM public.leads") }
            #expect(nested.count == 5, "\(run.output)")  // the batch: one first page, one page after a cursor
            for plan in nested {
                #expect(plan.contains("leads_tenant_newest"), "\(plan)")
                #expect(!plan.contains("Sort"), "\(plan)")
            }
        }
    }

    @Test func queryPlansUseTheTenantIndex() async throws {
        let database = try Backend.postgres.databaseURL()
        let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
        _ = try await StoreSetup.migrate(databaseURL: database, logger: logger)
        let client = PostgresClient(configuration: try PostgresURL.configuration(database), backgroundLogger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await client.withConnection { connection in
                let prefix = "plan-\(UUID().uuidString.prefix(6))-"
                // Row-level security is forced on the owner too and no setting opens leads across tenants: seed
                // each tenant in its own scope, then explain as one tenant, so the plans include the policy's filter.
                for index in 0..<20 {
                    let seeded = prefix + String(index)
                    _ = try await connection.query("SELECT set_config('app.tenant_id', \(seeded), false)", logger: logger)
                    _ = try await connection.query(
                        """
                        INSERT INTO leads (tenant_id, id, name, email, status, created_by, created_at, updated_at)
                        SELECT \(seeded), gen_random_uuid(), 'n' || i, 'e' || i || '@x.example', 'new', 'u',
                               now() - (i || ' seconds')::interval, now()
                        FROM generate_series(1, 1000) AS i
                        """, logger: logger)
                }
                _ = try await connection.query("ANALYZE leads", logger: logger)
                let tenant = prefix + "7"
                _ = try await connection.query("SELECT set_config('app.tenant_id', \(tenant), false)", logger: logger)
                var someID = ""
                for try await id in try await connection.query("SELECT id::text FROM leads WHERE tenant_id = \(tenant) LIMIT 1", logger: logger).decode(String.self) {
                    someID = id
                }
                let plans: [(String, PostgresQuery)] = [
                    ("list", "EXPLAIN SELECT id FROM leads WHERE tenant_id = \(tenant) ORDER BY created_at DESC, id DESC LIMIT 21"),
                    ("list after cursor", "EXPLAIN SELECT id FROM leads WHERE tenant_id = \(tenant) AND (created_at, id) < (now(), \(someID)::uuid) ORDER BY created_at DESC, id DESC LIMIT 21"),
                    ("get", "EXPLAIN SELECT id FROM leads WHERE tenant_id = \(tenant) AND id = \(someID)::uuid"),
                    ("update", "EXPLAIN UPDATE leads SET status = 'won' WHERE tenant_id = \(tenant) AND id = \(someID)::uuid"),
                    ("delete", "EXPLAIN DELETE FROM leads WHERE tenant_id = \(tenant) AND id = \(someID)::uuid"),
                    // The listing's JSON form, as fnhost_leads_json runs it.
                    ("list json", """
                        EXPLAIN SELECT row_to_json(l)::text FROM (SELECT leads.id::text AS id, leads.name FROM public.leads
                        WHERE leads.tenant_id = \(tenant) ORDER BY leads.created_at DESC, leads.id DESC LIMIT 21) l
                        """),
                ]
                for (name, query) in plans {
                    var plan = ""
                    for try await line in try await connection.query(query, logger: logger).decode(String.self) { plan += line + "\n" }
                    #expect(!plan.contains("Seq Scan"), "\(name): \(plan)")
                    #expect(plan.contains("leads_pkey") || plan.contains("leads_tenant_newest"), "\(name): \(plan)")
                }
                // A query that forgot its tenant filter still sees this tenant's rows only (a filter, not an
                // index: the policy's cross-tenant branch keeps the planner from using one; such a query is a bug).
                var unfiltered = 0
                for try await value in try await connection.query("SELECT count(*)::int FROM leads", logger: logger).decode(Int.self) {
                    unfiltered = value
                }
                #expect(unfiltered == 1000)
                // The functions the store calls return this tenant's rows only.
                var count = 0
                for try await _ in try await connection.query("SELECT o_id FROM fnhost_leads_page(\(tenant), 5000, NULL, NULL)", logger: logger).decode(String.self) {
                    count += 1
                }
                #expect(count == 1000)
                for index in 0..<20 {
                    let seeded = prefix + String(index)
                    _ = try await connection.query("SELECT set_config('app.tenant_id', \(seeded), false)", logger: logger)
                    _ = try await connection.query("DELETE FROM leads WHERE tenant_id = \(seeded)", logger: logger)
                }
                _ = try await connection.query("RESET app.tenant_id", logger: logger)
            }
        }
    }
}

@Suite struct PermissionTableTests {
    @Test func theModulePermissionsTableDecides() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-perms-\(UUID().uuidString).sqlite").path
        _ = try await StoreSetup.migrate(databaseURL: "sqlite:" + path, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        let update = try await runProgram("/usr/bin/env", [
            "python3", "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE module_permissions SET step_up=1 WHERE permission='LEADS_READ'\"); c.commit()",
            path,
        ])
        #expect(update.status == 0, "\(update.output)")

        try await LeadsHarness.run(databaseURL: "sqlite:" + path) { host, key, client in
            await LeadsHarness.grant(host, tenant: "t-perm", user: "u", ["LEADS_READ"])
            let plain = try LeadsHarness.token(key, tenant: "t-perm", user: "u")
            var reply = try await client.send(.get, "/api/leads", token: plain)
            let deadline = ContinuousClock.now + .seconds(20)
            while reply.code != "STEP_UP_REQUIRED", ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                reply = try await client.send(.get, "/api/leads", token: plain)
            }
            #expect(reply.status == .forbidden)
            #expect(reply.code == "STEP_UP_REQUIRED", "the table's step_up=1 applies, not the code's default")
            let mfa = try Tokens.make(
                Tokens.claims(tenant: "t-perm", sub: "u", extra: ["amr": .array([.string("mfa")])]), signing: .rs256(key))
            #expect(try await client.send(.get, "/api/leads", token: mfa).status == .ok)
        }
    }
}

import Foundation
import TestSupport
import Testing

/// The leads flow as a user runs it: `fnhost start` on Postgres (and on the embedded SQLite),
/// tokens minted with `fnhost token` for two tenants, CRUD and export over HTTP.
@Suite(.serialized) struct LeadsFlowTests {
    enum Database: String, CaseIterable { case postgres, sqlite }

    static func json(_ text: String) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]) ?? [:]
    }

    static func token(_ root: String, tenant: String, user: String, _ extra: [String]) async throws -> String {
        let (status, output, _) = try await DevHostTests.run(
            ["token", "--tenant", tenant, "--user", user, "--script-root", root] + extra)
        #expect(status == 0)
        return try #require(output.split(separator: "\n").last.map(String.init))
    }

    @Test(arguments: Database.allCases)
    func twoTenantsCrudAndExport(database: Database) async throws {
        var environment: [String: String] = [:]
        if database == .postgres {
            let url: String = try #require(ProcessInfo.processInfo.environment["FNHOST_TEST_DATABASE_URL"], "run through make test")
            environment["DATABASE_URL"] = url
        }
        let root = try ScriptRoot.repository()
        let host = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root], environment: environment)
        defer { host.terminate() }
        let base = "http://127.0.0.1:\(try await host.waitForPort())"
        let suffix = UUID().uuidString.prefix(6)
        let all = ["--perm", "LEADS_READ", "--perm", "LEADS_WRITE", "--perm", "LEADS_DELETE", "--perm", "EXPORTS_EXECUTE"]
        let alice = try await Self.token(root, tenant: "t-a-\(suffix)", user: "alice", all + ["--mfa"])
        let bob = try await Self.token(root, tenant: "t-b-\(suffix)", user: "bob", all + ["--mfa"])
        let reader = try await Self.token(root, tenant: "t-a-\(suffix)", user: "reader", ["--perm", "LEADS_READ"])
        let noMFA = try await Self.token(root, tenant: "t-a-\(suffix)", user: "carol", all)
        func call(_ method: String, _ path: String, _ token: String, _ body: String? = nil) async throws -> (Int, String) {
            var headers = ["Authorization": "Bearer \(token)"]
            if body != nil { headers["Content-Type"] = "application/json" }
            let (status, text, _) = try await HTTP.send(base + path, method: method, body: body, headers: headers)
            return (status, text)
        }

        let (created, createdBody) = try await call("POST", "/api/leads", alice, #"{"name":"Ada","email":"ada@a.example","company":"=cmd"}"#)
        #expect(created == 201)
        let aliceLead = try #require(Self.json(createdBody)["id"] as? String)
        let (_, bobBody) = try await call("POST", "/api/leads", bob, #"{"name":"Bob","email":"bob@b.example"}"#)
        let bobLead = try #require(Self.json(bobBody)["id"] as? String)

        let (listStatus, list) = try await call("GET", "/api/leads?limit=10", alice)
        #expect(listStatus == 200)
        #expect(list.contains(aliceLead) && !list.contains(bobLead))
        #expect(try await call("GET", "/api/leads/\(bobLead)", alice).0 == 404)
        #expect(try await call("PATCH", "/api/leads/\(bobLead)", alice, #"{"status":"lost"}"#).0 == 404)
        #expect(try await call("DELETE", "/api/leads/\(bobLead)", alice).0 == 404)
        let (patched, patchedBody) = try await call("PATCH", "/api/leads/\(aliceLead)", alice, #"{"status":"won"}"#)
        #expect(patched == 200 && patchedBody.contains(#""status":"won""#))

        let (denied, deniedBody) = try await call("POST", "/api/leads", reader, #"{"name":"X","email":"x@a.example"}"#)
        #expect(denied == 403 && deniedBody.contains("PERMISSION_DENIED"))
        let (stepUp, stepUpBody) = try await call("DELETE", "/api/leads/\(aliceLead)", noMFA)
        #expect(stepUp == 403 && stepUpBody.contains("STEP_UP_REQUIRED"))
        #expect(try await call("POST", "/api/exports/leads", noMFA).0 == 403)

        let (exportStatus, csv) = try await call("POST", "/api/exports/leads", alice)
        #expect(exportStatus == 200)
        #expect(csv.hasPrefix("id,name,email,phone,company,status,notes,created_by,created_at,updated_at\r\n"))
        #expect(csv.contains("'=cmd") && csv.contains(aliceLead) && !csv.contains(bobLead))

        #expect(try await call("DELETE", "/api/leads/\(aliceLead)", alice).0 == 204)
        #expect(try await call("GET", "/api/leads/\(aliceLead)", alice).0 == 404)
        #expect(try await call("GET", "/api/leads/\(bobLead)", bob).0 == 200)
    }
}

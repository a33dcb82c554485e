import Foundation
import FunctionRuntime
import HTTPTypes
import TestSupport
import Testing

/// docs/api.md's endpoint tables against function.json: every HTTP function has exactly one row,
/// with its method, served path and function name as function.json says.
@Suite struct APIDocTests {
    @Test func everyHTTPFunctionHasOneRowAsServed() throws {
        let doc = try String(contentsOf: Repository.file("docs/api.md"), encoding: .utf8)
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: Repository.file("function.json"))) as? [String: Any])
        let functions = try #require(manifest["functions"] as? [String: [String: Any]])
        let rows = doc.split(separator: "\n").filter { $0.hasPrefix("| `") }
        var checked = 0
        for (name, entry) in functions {
            guard let trigger = (entry["bindings"] as? [[String: Any]])?.first(where: { $0["type"] as? String == "httpTrigger" }) else { continue }
            let route = try #require(trigger["route"] as? String)
            let methods = ((trigger["methods"] as? [String]) ?? []).map { $0.uppercased() }
            let named = rows.filter { $0.contains("| `\(name)` |") }
            #expect(named.count == methods.count, "\(name): one row per method, found \(named.count)")
            for method in methods {
                #expect(named.contains { $0.hasPrefix("| `\(method) /\(route)` |") }, "\(name): `\(method) /\(route)` in docs/api.md")
            }
            checked += 1
        }
        #expect(checked >= 17)
    }

    /// The error codes of the table under "Error shape" (second column).
    static func tableCodes(_ doc: String) throws -> Set<String> {
        let code = try Regex(#"`([A-Z][A-Z_]+)`"#)
        var codes = Set<String>()
        for row in doc.split(separator: "\n") where row.hasPrefix("| 4") || row.hasPrefix("| 5") {
            let columns = row.split(separator: "|", omittingEmptySubsequences: false)
            guard columns.count > 2 else { continue }
            for match in columns[2].matches(of: code) { codes.insert(String(columns[2][match.range].dropFirst().dropLast())) }
        }
        return codes
    }

    /// Every code the sources can answer is in the table, and the table lists no code nothing answers.
    @Test func theErrorTableListsEveryCodeTheSourcesAnswer() throws {
        let doc = try String(contentsOf: Repository.file("docs/api.md"), encoding: .utf8)
        let documented = try Self.tableCodes(doc)
        let constructed = try Regex(#"code: "([A-Z][A-Z_]+)"|\), "([A-Z][A-Z_]+)", ""#)
        var answered = Set<String>()
        for folder in ["Runtime", "Functions"] {
            let root = Repository.file(folder)
            let files = (FileManager.default.enumerator(atPath: root.path)?.allObjects as? [String]) ?? []
            for file in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
                for match in text.matches(of: constructed) {
                    let quoted = text[match.range].split(separator: "\"")
                    if quoted.count > 1 { answered.insert(String(quoted[1])) }
                }
            }
        }
        #expect(answered.count >= 15, "\(answered.sorted())")
        #expect(answered.subtracting(documented).isEmpty, "answered but not in docs/api.md: \(answered.subtracting(documented).sorted())")
        #expect(documented.subtracting(answered).isEmpty, "in docs/api.md but never answered: \(documented.subtracting(answered).sorted())")
    }

    /// The example under "Error shape" is what the module answers to that request, word for word.
    @Test func theErrorExampleIsTheModulesAnswer() async throws {
        let doc = try String(contentsOf: Repository.file("docs/api.md"), encoding: .utf8)
        let block = try #require(doc.components(separatedBy: "```json\n").dropFirst().first?.components(separatedBy: "```").first)
        let example = try #require(try JSONSerialization.jsonObject(with: Data(block.utf8)) as? [String: Any])
        let error = try #require(example["error"] as? [String: Any])
        let (code, message) = (error["code"] as? String, error["message"] as? String)
        try await LeadsHarness.run(.sqlite) { host, key, client in
            let tenant = "t-doc-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_WRITE"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            let answer = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"Ada","email":"ada@x.example","notes":"a\u0000b"}"#)
            #expect(answer.status == .badRequest)
            #expect(code != nil && answer.code == code)
            #expect(message != nil && answer.message == message)
            let requestID = (answer.json["error"] as? [String: Any])?["request_id"] as? String
            #expect(requestID != nil && requestID == answer.headers[.requestID], "the same id in X-Request-Id")
        }
    }
}

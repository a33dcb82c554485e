import Foundation
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
}

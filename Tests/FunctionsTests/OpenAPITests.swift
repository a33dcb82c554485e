import Foundation
import TestSupport
import FunctionRuntime
import HummingbirdTesting
import Logging
import Testing

@testable import Functions

/// `GET /openapi.json` is assembled from the manifest and the functions' declarations, and is a
/// valid OpenAPI 3.1 document (checked by openapi-spec-validator, the reference validator).
@Suite struct OpenAPITests {
    static func document() async throws -> Data {
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: Repository.root.path, port: 0), module: FunctionHostModule(),
            environment: ["DATABASE_URL": "sqlite::memory:"], logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        return try await host.application().test(.live) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                return Data(buffer: response.body)
            }
        }
    }

    @Test func everyHTTPFunctionIsDescribed() async throws {
        let document = try #require(try JSONSerialization.jsonObject(with: try await Self.document()) as? [String: Any])
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let manifest = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: Repository.root.appendingPathComponent("function.json")))
                as? [String: Any])
        let functions = try #require(manifest["functions"] as? [String: [String: Any]])
        var operationIDs: Set<String> = []
        for (_, methods) in paths {
            for (_, operation) in methods {
                if let id = (operation as? [String: Any])?["operationId"] as? String { operationIDs.insert(id) }
            }
        }
        let httpFunctions = functions.filter { entry in
            ((entry.value["bindings"] as? [[String: Any]]) ?? []).contains { $0["type"] as? String == "httpTrigger" }
        }
        #expect(operationIDs == Set(httpFunctions.keys))
        let get = try #require(paths["/api/leads/{id}"]?["get"] as? [String: Any])
        #expect((get["security"] as? [[String: [String]]])?.first?["bearer"] == [])
        let responses = try #require(get["responses"] as? [String: Any])
        for status in ["200", "400", "401", "403", "404", "500", "503"] {
            #expect(responses[status] != nil, "GetLead documents \(status)")
        }
        // Error codes: the module's (through ModuleContext.describeErrors) before the runtime's.
        func described(_ status: String) -> String? { (responses[status] as? [String: Any])?["description"] as? String }
        #expect(described("401") == "UNAUTHENTICATED or INVALID_SIGNATURE")
        #expect(described("403") == "PERMISSION_DENIED or STEP_UP_REQUIRED")
        #expect(described("503") == "RBAC_UNAVAILABLE or SERVICE_UNAVAILABLE")
        #expect(described("400") == "VALIDATION_FAILED")
        let health = try #require(paths["/health"]?["get"] as? [String: Any])
        #expect((health["security"] as? [Any])?.isEmpty == true)
    }

    @Test func documentPassesOpenAPISpecValidator() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID().uuidString).json")
        try await Self.document().write(to: file)
        let (status, text) = try await runProgram("/usr/bin/env", [
            "python3", "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')",
            file.path,
        ])
        #expect(status == 0, "\(text)")
        #expect(text.contains("valid"))
    }
}

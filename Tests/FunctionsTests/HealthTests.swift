import Foundation
import FunctionRuntime
import Logging
import Testing

@testable import Functions

/// The repository's own function.json must load against the module's handlers, in every environment.
@Suite struct ModuleManifestTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    @Test(arguments: ["development", "staging", "production"])
    func repositoryManifestMatchesTheModule(environment: String) async throws {
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: Self.repositoryRoot, port: 0), module: FunctionHostModule(),
            environment: ["ENVIRONMENT": environment], logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let names = host.catalog.functions.map(\.name)
        #expect(names.contains("Health"))
        #expect(names.contains("HealthReady"))
        #expect(host.catalog.function(named: "Health")?.spec.httpTrigger?.route.template == "health")
    }
}

@Suite struct HealthTests {
    private func request(_ name: String) -> FunctionRequest {
        FunctionRequest(
            functionName: name, method: .get, path: "/health", requestID: "r-1",
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    }

    @Test func healthAnswersOK() async throws {
        let response = try await Health().handle(request("Health"))
        #expect(response.status == .ok)
        guard case .bytes(let body) = response.body else { Issue.record("expected bytes"); return }
        #expect(String(buffer: body) == #"{"status":"ok"}"#)
        #expect(response.headers[.contentType] == "application/json; charset=utf-8")
    }

    struct FixedCheck: ReadinessCheck {
        let name: String
        let ready: Bool
        func isReady() async -> Bool { ready }
    }

    @Test func readyWhenEveryCheckPasses() async throws {
        let response = try await HealthReady(checks: [FixedCheck(name: "database", ready: true), FixedCheck(name: "cache", ready: true)])
            .handle(request("HealthReady"))
        #expect(response.status == .ok)
        guard case .bytes(let body) = response.body else { Issue.record("expected bytes"); return }
        #expect(String(buffer: body) == #"{"status":"ok","checks":{"cache":"ok","database":"ok"}}"#)
    }

    @Test func notReadyNamesTheFailingDependency() async throws {
        await #expect {
            _ = try await HealthReady(checks: [FixedCheck(name: "database", ready: false), FixedCheck(name: "cache", ready: true)])
                .handle(request("HealthReady"))
        } throws: { error in
            guard let error = error as? FunctionError else { return false }
            return error.status == .serviceUnavailable && error.code == "SERVICE_UNAVAILABLE" && error.message == "not ready: database"
        }
    }
}

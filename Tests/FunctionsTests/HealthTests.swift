import Foundation
import TestSupport
import FunctionRuntime
import Logging
import Testing

@testable import Functions

/// The repository's own function.json must load against the module's handlers, in every environment.
@Suite struct ModuleManifestTests {

    static let allSecrets = Dictionary(uniqueKeysWithValues: FunctionHostModule().requiredSecrets.map { ($0, "value-of-\($0)") })
        .merging([
            "HOST_JWKS_URI": "https://host.example/.well-known/jwks.json", "JWT_ISSUER": "https://host.example",
            "JWT_AUDIENCE": "fnhost", "HOST_RBAC_API_URL": "https://host.example/api", "HOST_EMAIL_API": "https://host.example/api",
            "DATABASE_URL": "sqlite::memory:", "AUDIT_SIGNING_KEY": "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
        ]) { $1 }

    @Test(arguments: ["development", "staging", "production"])
    func repositoryManifestMatchesTheModule(environment: String) async throws {
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: Repository.root.path, port: 0), module: FunctionHostModule(),
            environment: Self.allSecrets.merging(["ENVIRONMENT": environment]) { $1 },
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let names = host.catalog.functions.map(\.name)
        #expect(names.contains("Health"))
        #expect(names.contains("HealthReady"))
        #expect(host.catalog.function(named: "Health")?.spec.httpTrigger?.route.template == "health")
    }

    @Test(arguments: ["staging", "production"])
    func missingRequiredSecretStopsStartupNamingIt(environment: String) async throws {
        var variables = Self.allSecrets.merging(["ENVIRONMENT": environment]) { $1 }
        variables["WEBHOOK_HMAC_SECRET"] = nil
        await #expect {
            _ = try await FunctionHost.build(
                options: .init(scriptRoot: Repository.root.path, port: 0), module: FunctionHostModule(), environment: variables,
                logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        } throws: { error in
            let text = String(describing: error)
            return text.contains("required secret WEBHOOK_HMAC_SECRET is not set") && !text.contains("value-of-")
        }
    }

    @Test func developmentStartsWithoutSecrets() async throws {
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: Repository.root.path, port: 0), module: FunctionHostModule(), environment: [:],
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        // Every function of the repository's function.json, each with its handler.
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: Repository.file("function.json"))) as? [String: Any])
        let names = try #require(manifest["functions"] as? [String: Any]).keys.sorted()
        #expect(host.catalog.functions.map(\.name).sorted() == names)
        #expect(names.contains("ListLeads") && names.contains("AuditChainVerifier"))
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

/// `local.settings.example` documents every setting of docs/settings.md with safe development values.
@Suite struct LocalSettingsExampleTests {
    static let specSettings = [
        "ENVIRONMENT", "HOST_JWKS_URI", "JWT_ISSUER", "JWT_AUDIENCE", "HOST_RBAC_API_URL", "HOST_RBAC_API_KEY",
        "HOST_EMAIL_API", "HOST_EMAIL_API_KEY", "WEBHOOK_HMAC_SECRET", "DATABASE_URL", "REDIS_URL",
        "STAGING_PLATFORM_ADMIN_EMAILS", "SUPER_ADMIN_GROUP", "RBAC_CACHE_TTL_SECONDS", "RBAC_STALE_MAX_SECONDS",
        "AUDIT_VERIFY_SCHEDULE", "METRICS_TOKEN", "RATE_LIMIT_PER_SECOND", "RATE_LIMIT_BURST", "INSTANCE_COUNT_HINT",
        "SECRETS_PROVIDER", "DATABASE_MIGRATION_URL", "DATABASE_MIGRATIONS", "TLS_CA_FILE", "CACHE_SIGNING_KEY", "AUDIT_SIGNING_KEY",
        "AUDIT_LOG_ORIGIN", "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    static let secrets = [
        "HOST_JWKS_URI", "HOST_RBAC_API_KEY", "HOST_EMAIL_API_KEY", "WEBHOOK_HMAC_SECRET", "DATABASE_URL", "METRICS_TOKEN",
        "DATABASE_MIGRATION_URL", "CACHE_SIGNING_KEY", "AUDIT_SIGNING_KEY",
    ]

    @Test func documentsEverySettingWithoutSecrets() throws {
        let path = Repository.root.path + "/local.settings.example"
        let file = try LocalSettingsFile.load(path: path)
        for name in Self.specSettings {
            #expect(file.values[name] != nil, "\(name) missing from local.settings.example")
        }
        for name in Self.secrets {
            #expect(file.values[name] == "", "\(name) must be empty in the example")
        }
        #expect(file.values["ENVIRONMENT"] == "development")
        #expect(file.localHTTPPort == 7071)
    }

    @Test func exampleStartsTheHostAsIs() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-example-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let root = URL(fileURLWithPath: Repository.root.path)
        try FileManager.default.copyItem(
            at: root.appendingPathComponent("function.json"), to: directory.appendingPathComponent("function.json"))
        try FileManager.default.copyItem(
            at: root.appendingPathComponent("local.settings.example"),
            to: directory.appendingPathComponent("local.settings.json"))
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: directory.path), module: FunctionHostModule(), environment: [:],
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        #expect(host.port == 7071)
        #expect(host.address == "127.0.0.1")
        #expect(host.settings["SUPER_ADMIN_GROUP"] == "Leaderboard_SuperAdmins")
    }
}

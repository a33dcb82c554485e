import Foundation
import TestSupport
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import FunctionRuntime

private func withVault(_ test: @escaping @Sendable (KeyVaultStandIn, URL) async throws -> Void) async throws {
    let standIn = KeyVaultStandIn()
    try await standIn.application().test(.live) { client in
        let port = try #require(client.port)
        let base = try #require(URL(string: "http://127.0.0.1:\(port)"))
        try await test(standIn, base)
    }
}

private func managedIdentity(_ base: URL) -> ManagedIdentityCredential {
    ManagedIdentityCredential(endpoint: base.appendingPathComponent("msi/token"), header: "identity-header-value")
}

@Suite struct KeyVaultTests {
    @Test func readsLatestAndPinnedVersionsWithAManagedIdentityToken() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("db-password", "first-value", version: "v1")
            await standIn.state.put("db-password", "second-value", version: "v2")
            let client = KeyVaultClient(credential: managedIdentity(base))
            let value1 = try await client.secret(vault: base, name: "db-password")
            #expect(value1 == "second-value")
            let value2 = try await client.secret(vault: base, name: "db-password", version: "v1")
            #expect(value2 == "first-value")
            #expect(await standIn.state.tokenRequests == 1, "the token is cached")
            #expect(await standIn.state.lastResource == "https://vault.azure.net")
        }
    }

    @Test func missingSecretIsNilAndMissingVersionIsAnError() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("present", "present-value", version: "v1")
            let client = KeyVaultClient(credential: managedIdentity(base))
            let value3 = try await client.secret(vault: base, name: "absent")
            #expect(value3 == nil)
            await #expect {
                _ = try await client.secret(vault: base, name: "present", version: "nope")
            } throws: { error in
                String(describing: error).contains("version nope not found")
            }
        }
    }

    @Test func forbiddenNamesTheSecretNotItsValue() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("locked", "locked-value")
            await standIn.state.set(forbidden: ["locked"])
            let client = KeyVaultClient(credential: managedIdentity(base))
            await #expect {
                _ = try await client.secret(vault: base, name: "locked")
            } throws: { error in
                let text = String(describing: error)
                return text.contains("secret locked") && text.contains("403") && !text.contains("locked-value")
            }
        }
    }

    @Test func unauthorizedRefetchesTheTokenOnceThenFails() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("s", "s-value")
            let client = KeyVaultClient(credential: managedIdentity(base))
            let value4 = try await client.secret(vault: base, name: "s")
            #expect(value4 == "s-value")
            await standIn.state.revokeTokens()  // the cached token is no longer accepted
            let value5 = try await client.secret(vault: base, name: "s")
            #expect(value5 == "s-value")
            #expect(await standIn.state.tokenRequests == 2)

            let wrongHeader = ManagedIdentityCredential(endpoint: base.appendingPathComponent("msi/token"), header: "wrong")
            await #expect {
                _ = try await KeyVaultClient(credential: wrongHeader).secret(vault: base, name: "s")
            } throws: { error in
                String(describing: error).contains("managed identity endpoint answered 400")
            }
        }
    }

    @Test func persistentUnauthorizedIsAClearError() async throws {
        struct FixedToken: TokenCredential {
            var name: String { "fixed" }
            func token() async throws(SecretsError) -> AccessToken {
                AccessToken(value: "not-a-valid-token", expiresOn: Date().addingTimeInterval(3600))
            }
        }
        try await withVault { standIn, base in
            await standIn.state.put("s", "s-value")
            await #expect {
                _ = try await KeyVaultClient(credential: FixedToken()).secret(vault: base, name: "s")
            } throws: { error in
                String(describing: error).contains("401 Unauthorized")
            }
        }
    }

    @Test func throttlingHonoursRetryAfter() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("busy", "busy-value")
            await standIn.state.set(throttle: "busy", times: 1)
            let client = KeyVaultClient(credential: managedIdentity(base))
            let started = ContinuousClock.now
            let value6 = try await client.secret(vault: base, name: "busy")
            #expect(value6 == "busy-value")
            #expect(ContinuousClock.now - started >= .milliseconds(900), "waited for Retry-After: 1")

            await standIn.state.set(throttle: "busy", times: 10)
            await #expect {
                _ = try await KeyVaultClient(credential: managedIdentity(base), maxAttempts: 2).secret(vault: base, name: "busy")
            } throws: { error in
                String(describing: error).contains("throttling")
            }
        }
    }

    /// 503 from the vault is retried like 429, honouring `Retry-After` in either form (an HTTP date
    /// four seconds ahead waits about that long, not the 1 s of its own backoff); a vault that refuses connections fails at once with
    /// an error naming the secret, never its value.
    @Test func unavailableVaultRetriesAndTransportErrorsFailFast() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("flaky", "flaky-value")
            let date = Date().addingTimeInterval(4)
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            await standIn.state.set(unavailable: "flaky", times: 1, retryAfter: formatter.string(from: date))
            let client = KeyVaultClient(credential: managedIdentity(base))
            let started = ContinuousClock.now
            let value = try await client.secret(vault: base, name: "flaky")
            #expect(value == "flaky-value")
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(2500) && waited < .seconds(20), "waited for the HTTP-date Retry-After (~3–4 s; without the date: 1 s): \(waited)")

            await standIn.state.set(unavailable: "flaky", times: 10, retryAfter: "0")
            await #expect {
                _ = try await KeyVaultClient(credential: managedIdentity(base), maxAttempts: 2).secret(vault: base, name: "flaky")
            } throws: { error in
                String(describing: error).contains("503") && !String(describing: error).contains("flaky-value")
            }
        }
        let refusing = try RefusingPort()
        defer { refusing.close() }
        let closed = URL(string: "http://127.0.0.1:\(refusing.port)")!
        try await withVault { _, base in
            let client = KeyVaultClient(credential: managedIdentity(base))
            let started = ContinuousClock.now
            await #expect {
                _ = try await client.secret(vault: closed, name: "anything")
            } throws: { error in
                String(describing: error).contains("secret anything: Key Vault unreachable")
            }
            #expect(ContinuousClock.now - started < .seconds(2), "a refused connection is not retried until the deadline")
        }
    }

    @Test func tokenIsRefreshedShortlyBeforeItExpires() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("s", "s-value")
            // expires_on is whole seconds, so leave a margin of several seconds either way.
            await standIn.state.set(tokenLifetime: 30)
            let client = KeyVaultClient(credential: managedIdentity(base), refreshMargin: 15)
            let value7 = try await client.secret(vault: base, name: "s")
            #expect(value7 == "s-value")
            let value8 = try await client.secret(vault: base, name: "s")
            #expect(value8 == "s-value")
            #expect(await standIn.state.tokenRequests == 1)
            try await Task.sleep(for: .milliseconds(15_500))
            let value9 = try await client.secret(vault: base, name: "s")
            #expect(value9 == "s-value")
            #expect(await standIn.state.tokenRequests == 2)
        }
    }

    @Test func clientCredentialsToken() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("s", "s-value")
            let credential = try KeyVaultClient.credential(
                settings: Settings([
                    "AZURE_TENANT_ID": "tenant-1", "AZURE_CLIENT_ID": "client-1", "AZURE_CLIENT_SECRET": "sp-secret-value",
                    "AZURE_AUTHORITY_HOST": base.absoluteString,
                ]))
            #expect(credential.name == "client credentials")
            let value10 = try await KeyVaultClient(credential: credential).secret(vault: base, name: "s")
            #expect(value10 == "s-value")
        }
    }

    @Test func credentialChoiceAndURLRules() throws {
        #expect(throws: SecretsError.self) { try KeyVaultClient.credential(settings: Settings()) }
        #expect(throws: SecretsError.self) {
            try KeyVaultClient.credential(settings: Settings(["IDENTITY_ENDPOINT": "http://10.0.0.1/msi", "IDENTITY_HEADER": "h"]))
        }
        #expect(try KeyVaultClient.credential(settings: Settings(["IDENTITY_ENDPOINT": "http://localhost:4100/msi/token", "IDENTITY_HEADER": "h"])).name == "managed identity")
        #expect(KeyVaultSecretsProvider.vaultName(for: "HOST_RBAC_API_KEY") == "HOST-RBAC-API-KEY")
    }

    @Test func referenceSyntax() throws {
        let uri = try KeyVaultReference(parsing: "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/mysecret/)")
        #expect(uri.vault.absoluteString == "https://myvault.vault.azure.net")
        #expect(uri.secretName == "mysecret")
        #expect(uri.version == nil)
        let versioned = try KeyVaultReference(
            parsing: "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/mysecret/ec96f02080254f109c51a1f14cdb1931)")
        #expect(versioned.version == "ec96f02080254f109c51a1f14cdb1931")
        let named = try KeyVaultReference(parsing: "@Microsoft.KeyVault(VaultName=myvault;SecretName=mysecret;SecretVersion=v7)")
        #expect(named.vault.absoluteString == "https://myvault.vault.azure.net")
        #expect(named.secretName == "mysecret")
        #expect(named.version == "v7")
        #expect(throws: SecretsError.self) { try KeyVaultReference(parsing: "@Microsoft.KeyVault(VaultName=myvault)") }
        #expect(throws: SecretsError.self) { try KeyVaultReference(parsing: "@Microsoft.KeyVault(SecretUri=http://evil.example/secrets/x)") }
        #expect(throws: SecretsError.self) { try KeyVaultReference(parsing: "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/keys/x)") }
    }
}

@Suite struct SecretsAtStartupTests {
    private static let manifest = manifestJSON(httpFunction("Echo", route: "echo"))

    private struct SecretModule: FunctionModule {
        let required: [String]
        var settingDefaults: [String: String] { [:] }
        var requiredSecrets: [String] { required }
        func configure(_ context: inout ModuleContext) async throws {
            let secrets = context.secrets
            let logger = context.logger
            if let value = try await secrets.secret(named: "DB_PASSWORD") {
                logger.info("connecting with password \(value)", metadata: ["dsn": .string("postgres://app:\(value)@db/app")])
            }
            context.functions.register("Echo", http: { request in
                let value = try await secrets.secret(named: "DB_PASSWORD") ?? ""
                request.logger.warning("handler saw \(value)")
                return .noContent()
            })
        }
    }

    @Test func keyVaultReferenceInASettingIsResolvedAtStartup() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("db-password", "kv-db-password-123")
            let root = try makeScriptRoot(manifest: Self.manifest)
            let logs = CapturedLogs()
            let redactor = SecretRedactor()
            let host = try await FunctionHost.build(
                options: .init(scriptRoot: root, port: 0), module: SecretModule(required: ["DB_PASSWORD"]),
                environment: [
                    "ENVIRONMENT": "production",
                    "DB_PASSWORD": "@Microsoft.KeyVault(SecretUri=\(base.absoluteString)/secrets/db-password/)",
                    "IDENTITY_ENDPOINT": base.appendingPathComponent("msi/token").absoluteString,
                    "IDENTITY_HEADER": "identity-header-value",
                ],
                logger: logs.redactingLogger(redactor), redactor: redactor)
            #expect(host.settings["DB_PASSWORD"] == "kv-db-password-123")
            #expect(!logs.text.contains("kv-db-password-123"))
            #expect(logs.text.contains("[REDACTED]"))
        }
    }

    @Test func unresolvableReferenceStopsStartupNamingTheSetting() async throws {
        try await withVault { _, base in
            let root = try makeScriptRoot(manifest: Self.manifest)
            await #expect {
                _ = try await FunctionHost.build(
                    options: .init(scriptRoot: root, port: 0), module: SecretModule(required: []),
                    environment: [
                        "DB_PASSWORD": "@Microsoft.KeyVault(SecretUri=\(base.absoluteString)/secrets/missing/)",
                        "IDENTITY_ENDPOINT": base.appendingPathComponent("msi/token").absoluteString,
                        "IDENTITY_HEADER": "identity-header-value",
                    ],
                    logger: CapturedLogs().logger())
            } throws: { error in
                String(describing: error).contains("setting DB_PASSWORD: secret missing not found")
            }
        }
    }

    @Test func keyVaultProviderSuppliesRequiredSecrets() async throws {
        try await withVault { standIn, base in
            await standIn.state.put("DB-PASSWORD", "vault-provided-password")
            let root = try makeScriptRoot(manifest: Self.manifest)
            let environment = [
                "ENVIRONMENT": "staging", "SECRETS_PROVIDER": "keyvault:\(base.absoluteString)",
                "IDENTITY_ENDPOINT": base.appendingPathComponent("msi/token").absoluteString,
                "IDENTITY_HEADER": "identity-header-value",
            ]
            _ = try await FunctionHost.build(
                options: .init(scriptRoot: root, port: 0), module: SecretModule(required: ["DB_PASSWORD"]),
                environment: environment, logger: CapturedLogs().logger())
            await #expect {
                _ = try await FunctionHost.build(
                    options: .init(scriptRoot: root, port: 0), module: SecretModule(required: ["DB_PASSWORD", "API_KEY"]),
                    environment: environment, logger: CapturedLogs().logger())
            } throws: { error in
                String(describing: error).contains("required secret API_KEY is not set (provider: keyvault:")
            }
        }
    }

    @Test func fileSecretsAreRedactedFromEveryLogLine() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data("file-db-password-456\n".utf8).write(to: directory.appendingPathComponent("DB_PASSWORD"))
        try Data("metrics-token-789".utf8).write(to: directory.appendingPathComponent("metrics-token"))
        let root = try makeScriptRoot(manifest: Self.manifest)
        let logs = CapturedLogs()
        let redactor = SecretRedactor()
        let host = try await FunctionHost.build(
            options: .init(scriptRoot: root, port: 0), module: SecretModule(required: ["DB_PASSWORD"]),
            environment: ["ENVIRONMENT": "production", "SECRETS_PROVIDER": "files:\(directory.path)", "LOG_LEVEL": "trace"],
            logger: logs.redactingLogger(redactor), redactor: redactor)
        try await host.application().test(.live) { client in
            try await client.execute(uri: "/echo", method: .get) { response in
                #expect(response.status == .noContent)
            }
            try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer metrics-token-789"]) { response in
                #expect(response.status == .ok)
                #expect(!String(buffer: response.body).contains("metrics-token-789"))
            }
        }
        #expect(logs.text.contains("handler saw [REDACTED]"))
        #expect(logs.text.contains("postgres://app:[REDACTED]@db/app"))
        #expect(!logs.text.contains("file-db-password-456"))
        #expect(!logs.text.contains("metrics-token-789"))
    }

    @Test func cachingProviderServesTheLastValueWhenARefreshFails() async throws {
        actor Flaky: SecretsProvider {
            var value: String? = "v1"
            var failing = false
            nonisolated var name: String { "flaky" }
            func set(value: String?, failing: Bool) { self.value = value; self.failing = failing }
            func secret(named name: String) async throws(SecretsError) -> String? {
                if failing { throw SecretsError("unreachable") }
                return value
            }
        }
        let flaky = Flaky()
        let cached = CachingSecretsProvider(flaky, refreshInterval: .seconds(2), logger: CapturedLogs().logger())
        let value11 = try await cached.secret(named: "s")
        #expect(value11 == "v1")
        await flaky.set(value: "v2", failing: false)
        let value12 = try await cached.secret(named: "s")
        #expect(value12 == "v1", "still fresh")
        try await Task.sleep(for: .milliseconds(2100))
        let value13 = try await cached.secret(named: "s")
        #expect(value13 == "v2", "rotated value picked up")
        await flaky.set(value: "v3", failing: true)
        try await Task.sleep(for: .milliseconds(2100))
        let value14 = try await cached.secret(named: "s")
        #expect(value14 == "v2", "last value kept while the source fails")
    }
}

/// Redaction on bytes: every occurrence, canonically equivalent secrets both masked, a line with no
/// secret unchanged, short values never registered.
@Suite struct SecretRedactorTests {
    @Test func masksEveryOccurrenceOnBytes() {
        let redactor = SecretRedactor()
        let nfc = "p\u{00E4}ssw\u{00F6}rd-1", nfd = "pa\u{0308}sswo\u{0308}rd-1"
        #expect(nfc == nfd, "String == calls them equal")
        for value in ["s3cret-value", nfc, nfd, "abc"] { redactor.register(value) }
        let line = "a=s3cret-value b=\(nfc) c=\(nfd) d=s3cret-values3cret-value abc"
        let redacted = redactor.redact(line)
        #expect(redacted == "a=[REDACTED] b=[REDACTED] c=[REDACTED] d=[REDACTED][REDACTED] abc", "\(redacted)")
        #expect(!Array(redacted.utf8).contains(0xCC), "no byte of the NFD secret's combining mark is left")
        let clean = "nothing to hide here, not even s3cret-valu"
        #expect(redactor.redact(clean) == clean)
        #expect(SecretRedactor().redact(line) == line, "no secrets registered: unchanged")
    }
}

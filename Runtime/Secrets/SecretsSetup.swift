import Foundation
import Logging

/// Start-up wiring of secrets from settings.
enum SecretsSetup {
    /// `SECRETS_PROVIDER`: `env` (default), `files:DIR` or `keyvault:https://NAME.vault.azure.net`,
    /// cached and refreshed every `SECRETS_REFRESH_SECONDS` (default 300) for rotation; the app
    /// settings are always consulted after it.
    static func secrets(settings: Settings, redactor: SecretRedactor, logger: Logger) throws(SecretsError) -> Secrets {
        let environment = EnvironmentSecretsProvider(settings: settings)
        let choice = HostSettings.secretsProvider.text(settings) ?? "env"
        let configured: (any SecretsProvider)?
        if choice == "env" {
            configured = nil
        } else if choice.hasPrefix("files:") {
            let directory = String(choice.dropFirst("files:".count))
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw SecretsError("SECRETS_PROVIDER: \(directory) is not a directory")
            }
            configured = DirectorySecretsProvider(directory: directory)
        } else if choice.hasPrefix("keyvault:") {
            guard let vault = URL(string: String(choice.dropFirst("keyvault:".count))), OutboundHTTP.isAllowedTarget(vault) else {
                throw SecretsError("SECRETS_PROVIDER: keyvault: needs an https vault URL")
            }
            configured = KeyVaultSecretsProvider(
                vault: vault, client: KeyVaultClient(credential: try KeyVaultClient.credential(settings: settings)))
        } else {
            throw SecretsError("SECRETS_PROVIDER must be env, files:DIR or keyvault:URL")
        }
        guard let configured else { return Secrets(providers: [environment], redactor: redactor) }
        let seconds: Int
        do {
            seconds = try HostSettings.secretsRefresh.seconds(settings)
        } catch {
            throw SecretsError(error.description)
        }
        let cached = CachingSecretsProvider(configured, refreshInterval: .seconds(seconds), logger: logger)
        return Secrets(providers: [cached, environment], redactor: redactor)
    }

    /// Replaces every setting whose value is a Key Vault reference with the secret, as the
    /// Azure platform does; a reference that does not resolve stops start-up naming the setting.
    static func resolveKeyVaultReferences(in settings: Settings, redactor: SecretRedactor) async throws(SecretsError) -> Settings {
        let references = settings.all.filter { KeyVaultReference.isReference($0.value) }
        guard !references.isEmpty else { return settings }
        let client = KeyVaultClient(credential: try KeyVaultClient.credential(settings: settings))
        var resolved = settings
        for (name, value) in references.sorted(by: { $0.key < $1.key }) {
            let reference: KeyVaultReference
            do {
                reference = try KeyVaultReference(parsing: value)
            } catch {
                throw SecretsError("setting \(name): \(error.description)")
            }
            let secret: String?
            do {
                secret = try await client.secret(vault: reference.vault, name: reference.secretName, version: reference.version)
            } catch {
                throw SecretsError("setting \(name): \(error.description)")
            }
            guard let secret else {
                throw SecretsError("setting \(name): secret \(reference.secretName) not found in Key Vault (404 SecretNotFound)")
            }
            redactor.register(secret)
            resolved = resolved.setting(name, to: secret)
        }
        return resolved
    }
}

import Foundation
import Logging

/// Settings and secrets exactly as the host loads them, for the server and for every subcommand
/// (`fnhost migrate`, `fnhost verify-audit`, …): the module's defaults → `local.settings.json`
/// `Values` (emulator only) → the process environment; Key Vault references resolved; `LOG_LEVEL`
/// and `ENVIRONMENT` checked; the secrets provider of `SECRETS_PROVIDER`.
public struct HostConfiguration: Sendable {
    public let settings: Settings
    public let local: LocalSettingsFile
    public let deployment: DeploymentEnvironment
    public let secrets: Secrets
    public let logLevel: Logger.Level?

    /// Throws `FunctionHost.StartupError` naming the setting that is wrong.
    public static func load(
        scriptRoot: String, mode: HostingMode, settingDefaults: [String: String],
        environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger, redactor: SecretRedactor
    ) async throws(FunctionHost.StartupError) -> HostConfiguration {
        do {
            let local = mode == .emulator
                ? try LocalSettingsFile.load(path: URL(fileURLWithPath: scriptRoot).appendingPathComponent("local.settings.json").path)
                : LocalSettingsFile()
            let settings = try await SecretsSetup.resolveKeyVaultReferences(
                in: Settings.layered(moduleDefaults(settingDefaults), local.values, environment), redactor: redactor)
            var level: Logger.Level?
            if let text = settings.nonEmpty(HostSettings.logLevel.name) {
                guard let parsed = Logger.Level(rawValue: text.lowercased()) else {
                    throw SettingsError("LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
                }
                level = parsed
            }
            var logger = logger
            if let level { logger.logLevel = level }
            let deployment = try settings.deploymentEnvironment(default: mode == .customHandler ? .production : .development)
            let secrets = try SecretsSetup.secrets(settings: settings, redactor: redactor, logger: logger)
            return HostConfiguration(settings: settings, local: local, deployment: deployment, secrets: secrets, logLevel: level)
        } catch let error as SettingsError {
            throw FunctionHost.StartupError(description: error.description)
        } catch let error as SecretsError {
            throw FunctionHost.StartupError(description: error.description)
        } catch {
            throw FunctionHost.StartupError(description: String(describing: type(of: error)))
        }
    }

    /// Settings only the deployment may give, never a module's default: `ENVIRONMENT` decides how closed the host is
    /// (production under `fnhost serve`), so a module that defaulted it would silently open every deployment that forgot it.
    public static let deploymentOnlySettings: Set<String> = [HostSettings.environment.name]

    /// The module's defaults without the settings only the deployment may give.
    static func moduleDefaults(_ defaults: [String: String]) -> [String: String] {
        defaults.filter { !deploymentOnlySettings.contains($0.key) }
    }
}

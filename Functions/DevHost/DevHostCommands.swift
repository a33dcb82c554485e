import Foundation
import FunctionRuntime
import CoreMetrics
import Logging

/// `fnhost token` and `fnhost dev-host …`: development only.
public enum DevHostCommands {
    public struct Refused: Error, CustomStringConvertible {
        public let description: String
    }

    /// ENVIRONMENT from the process or `local.settings.json` under the script root must be development.
    static func store(scriptRoot: String) throws -> DevHostStore {
        let local = try LocalSettingsFile.load(path: URL(fileURLWithPath: scriptRoot).appendingPathComponent("local.settings.json").path)
        let settings = Settings.layered(local.values, ProcessInfo.processInfo.environment)
        guard try settings.deploymentEnvironment() == .development else {
            throw Refused(description: "the development host is refused outside ENVIRONMENT=development")
        }
        return DevHostStore(scriptRoot: scriptRoot)
    }

    /// Records the user's tenant, permissions and assurance, and returns a token the emulator accepts.
    public static func token(
        scriptRoot: String, tenant: String, user: String, email: String?, mfa: Bool, permissions: [String],
        groups: [String], superAdmin: Bool, ttl: Int
    ) throws -> String {
        guard (1...14_400).contains(ttl) else { throw Refused(description: "--ttl must be 1…14400 seconds") }
        guard let tenantID = TenantID(validating: tenant) else {
            throw Refused(description: "--tenant must be 1…128 bytes without control characters, and not 'platform'")
        }
        guard let userID = UserID(validating: user) else { throw Refused(description: "--user must be 1…128 bytes without control characters") }
        let store = try store(scriptRoot: scriptRoot)
        let address = email ?? "\(user)@\(tenant).example"
        try store.update { directory in
            directory.setUser(tenant: tenantID, user: userID, DevHostStore.User(email: address, permissions: permissions, groups: groups, mfa: mfa))
        }
        return try store.mint(tenant: tenant, user: user, email: address, mfa: mfa, groups: groups, superAdmin: superAdmin, ttl: ttl)
    }

    public static func rotateKey(scriptRoot: String) throws {
        try store(scriptRoot: scriptRoot).rotateKey()
    }

    public static func setEmailFailing(_ failing: Bool, scriptRoot: String) throws {
        try store(scriptRoot: scriptRoot).update { $0.emailFailing = failing }
    }

    public static func setRBACFailing(_ failing: Bool, scriptRoot: String) throws {
        try store(scriptRoot: scriptRoot).update { $0.rbacFailing = failing }
    }
}

/// `fnhost migrate` and `fnhost verify-audit`.
public enum StoreCommands {
    /// What a subcommand prints when it cannot run: our own one-line errors (which name settings,
    /// never their values, and pass the redactor), otherwise only the error's type — a driver's
    /// message could carry a connection string.
    public static func reason(_ error: any Error) -> String {
        if let startup = error as? FunctionHost.StartupError { return HostCLI.redactor.redact(startup.description) }
        if let refused = error as? DevHostCommands.Refused { return refused.description }
        return String(describing: type(of: error))
    }

    /// Settings and secrets as the server loads them (`SECRETS_PROVIDER`, Key Vault references).
    static func configuration(scriptRoot: String, logger: Logger) async throws -> HostConfiguration {
        try await HostConfiguration.load(
            scriptRoot: scriptRoot, mode: .emulator, settingDefaults: FunctionHostModule().settingDefaults, logger: logger,
            redactor: HostCLI.redactor)
    }

    /// `DATABASE_URL` from the secrets provider, then the app settings; default: the embedded SQLite file.
    static func databaseURL(_ configuration: HostConfiguration, scriptRoot: String) async throws -> String {
        try await configuration.secrets.secret(named: ModuleSettingSpecs.databaseURL.name).flatMap { $0.isEmpty ? nil : $0 }
            ?? "sqlite:" + URL(fileURLWithPath: scriptRoot).appendingPathComponent(".fnhost/data/fnhost.sqlite").path
    }

    /// `DATABASE_POOLER` as the server reads it.
    static func pooler(_ configuration: HostConfiguration) throws -> DatabasePooler {
        try DatabasePooler(setting: ModuleSettingSpecs.databasePooler.text(configuration.settings))
    }

    /// Verifies the chains once, appends the outcome to the platform chain, and returns the chains and
    /// events read and one line per broken chain (empty: no break). Throws when it could not run.
    public static func verifyAudit(
        scriptRoot: String, tenant: String?, full: Bool, logger: Logger
    ) async throws -> (chains: Int, events: Int, breaks: [String]) {
        let configuration = try await configuration(scriptRoot: scriptRoot, logger: logger)
        let url = try await databaseURL(configuration, scriptRoot: scriptRoot)
        return try await StoreSetup.withStore(
            databaseURL: url, caFile: ModuleSettingSpecs.tlsCAFile.text(configuration.settings), pooler: try pooler(configuration), logger: logger
        ) { store in
            let verification = AuditVerification(store: store, logger: logger, metrics: NOOPMetricsHandler.instance)
            let report = try await verification.run(tenant: tenant, full: full)
            return (report.chains, report.events, report.breaks.map(\.description))
        }
    }

    /// Applies pending migrations to `DATABASE_URL` (environment or `local.settings.json`; default: the embedded SQLite file).
    /// With `DATABASE_MIGRATION_URL` (the schema owner) the migrations run as that role and the
    /// `DATABASE_URL` role gets exactly the module's grants (docs/data.md).
    public static func migrate(scriptRoot: String, logger: Logger) async throws -> [Int] {
        let configuration = try await configuration(scriptRoot: scriptRoot, logger: logger)
        let runtime = try await databaseURL(configuration, scriptRoot: scriptRoot)
        let owner = try await configuration.secrets.secret(named: ModuleSettingSpecs.databaseMigrationURL.name).flatMap { $0.isEmpty ? nil : $0 }
        // TLS_CA_FILE as the server reads it (local.settings.json included), not the environment alone.
        let caFile = ModuleSettingSpecs.tlsCAFile.text(configuration.settings)
        let pooler = try pooler(configuration)
        guard let owner, owner != runtime else {
            return try await StoreSetup.migrate(databaseURL: runtime, caFile: caFile, pooler: pooler, logger: logger)
        }
        return try await StoreSetup.migrate(databaseURL: owner, runtimeRole: postgresUser(runtime), caFile: caFile, pooler: pooler, logger: logger)
    }

    /// `fnhost verify-audit --checkpoint FILE [--verifier-key KEY]`: the checkpoint's signature
    /// (by `KEY`, default the module's own key), then that the live chain still has that root at
    /// that size, recomputed from the events. `consistent` false: exit 1; a throw: exit 2.
    public static func verifyCheckpoint(
        scriptRoot: String, checkpointFile: String, verifierKey: String?, logger: Logger
    ) async throws -> (consistent: Bool, message: String) {
        let note = try String(contentsOf: URL(fileURLWithPath: checkpointFile), encoding: .utf8)
        let configuration = try await configuration(scriptRoot: scriptRoot, logger: logger)
        let key: String
        if let verifierKey {
            key = verifierKey
        } else {
            let origin = ModuleSettingSpecs.auditLogOrigin.text(configuration.settings) ?? CheckpointSigner.defaultOrigin
            let file = URL(fileURLWithPath: scriptRoot).appendingPathComponent(".fnhost/dev-host/audit-signing-key")
            guard let seed = try await configuration.secrets.secret(named: ModuleSettingSpecs.auditSigningKey.name).flatMap(CheckpointSigner.seed(base64:))
                ?? (try? String(contentsOf: file, encoding: .utf8)).flatMap(CheckpointSigner.seed(base64:))
            else { throw DevHostCommands.Refused(description: "no --verifier-key and no AUDIT_SIGNING_KEY to derive it from") }
            key = try CheckpointSigner(name: origin, seed: seed).verifierKey
        }
        let checkpoint: CheckpointNote
        do {
            checkpoint = try CheckpointNote.verified(note, verifierKey: key)
        } catch {
            return (false, "checkpoint refused: \(error.description)")
        }
        guard let name = try? VerifierKey(key).name, let chain = checkpoint.chainID(under: name) else {
            return (false, "checkpoint refused: its origin is not a chain of this log")
        }
        let url = try await databaseURL(configuration, scriptRoot: scriptRoot)
        let root = try await StoreSetup.withStore(
            databaseURL: url, caFile: ModuleSettingSpecs.tlsCAFile.text(configuration.settings), pooler: try pooler(configuration), logger: logger
        ) { store in
            try await AuditTree(store: store).rootFromEvents(chain, size: checkpoint.size)
        }
        guard let root else { return (false, "chain \(chain) has fewer than \(checkpoint.size) intact events: not consistent") }
        guard root == checkpoint.root else {
            return (false, "chain \(chain) no longer has the checkpoint's root at size \(checkpoint.size): history was rewritten")
        }
        return (true, "chain \(chain) is consistent with the checkpoint (size \(checkpoint.size))")
    }
}

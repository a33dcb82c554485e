import ArgumentParser
import FunctionRuntime
import Functions
import NIOCore
import NIOPosix

@main
struct FnHost: AsyncParsableCommand {
    static func main() async {
        // Run Swift concurrency on NIO's event loops: no thread hop between handlers and I/O.
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "fnhost",
        abstract: "A Swift function host in the Azure Functions shape.",
        subcommands: [Start.self, Serve.self, Migrate.self, VerifyAudit.self, Package.self, Token.self, DevHost.self])
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the local emulator (like Azure's `func start`): HTTP triggers, timers and the admin API.")

    @OptionGroup var options: StartOptions

    func run() async throws {
        let logger = HostCLI.bootstrapLogging()
        try await HostCLI.start(options, module: FunctionHostModule(), logger: logger)
    }
}


struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Azure Functions custom-handler mode: serve 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT for the Functions host.")

    @OptionGroup var options: ServeOptions

    func run() async throws {
        let logger = HostCLI.bootstrapLogging()
        try await HostCLI.serve(options, module: FunctionHostModule(), logger: logger)
    }
}

struct Package: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the Azure deployment layout: host.json, NAME/function.json per function, the fnhost binary.")

    @OptionGroup var options: PackageOptions

    func run() async throws {
        let logger = HostCLI.bootstrapLogging()
        try await HostCLI.package(options, module: FunctionHostModule(), logger: logger)
    }
}

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Development only: print a token signed by the built-in development host (last line of stdout).")

    @Option(help: "Tenant id (the token's tenant_id claim).") var tenant: String
    @Option(help: "User id (the token's sub claim).") var user: String
    @Option(help: "Email claim (default: USER@TENANT.example).") var email: String?
    @Flag(help: "Authenticated with MFA (amr contains mfa; the RBAC answer reports assurance high).") var mfa = false
    @Option(name: .customLong("perm"), help: "A permission the development host grants (repeatable).") var permissions: [String] = []
    @Option(name: .customLong("group"), help: "A group in the token and the RBAC answer (repeatable).") var groups: [String] = []
    @Flag(name: .customLong("super-admin"), help: "Set platform_super_admin: true.") var superAdmin = false
    @Option(help: "Lifetime in seconds (at most 14400).") var ttl: Int = 3600
    @Option(name: .customLong("script-root"), help: "The project folder (holds .fnhost/dev-host).") var scriptRoot: String = "."

    func run() throws {
        do {
            print(try DevHostCommands.token(
                scriptRoot: scriptRoot, tenant: tenant, user: user, email: email, mfa: mfa, permissions: permissions,
                groups: groups, superAdmin: superAdmin, ttl: ttl))
        } catch {
            throw ValidationError(String(describing: error))
        }
    }
}

struct DevHost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-host",
        abstract: "Development only: switches of the built-in development host.",
        subcommands: [RotateKey.self, RBACFail.self, RBACRestore.self, EmailFail.self, EmailRestore.self])

    struct RotateKey: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sign new tokens with a new key (the old one stays published).")
        @Option(name: .customLong("script-root")) var scriptRoot: String = "."
        func run() throws { try DevHostCommands.rotateKey(scriptRoot: scriptRoot) }
    }

    struct RBACFail: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rbac-fail", abstract: "Make the RBAC endpoint fail (try degradation).")
        @Option(name: .customLong("script-root")) var scriptRoot: String = "."
        func run() throws { try DevHostCommands.setRBACFailing(true, scriptRoot: scriptRoot) }
    }

    struct EmailFail: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "email-fail", abstract: "Make the email endpoint fail (watch the outbox retry).")
        @Option(name: .customLong("script-root")) var scriptRoot: String = "."
        func run() throws { try DevHostCommands.setEmailFailing(true, scriptRoot: scriptRoot) }
    }

    struct EmailRestore: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "email-restore", abstract: "Make the email endpoint answer again.")
        @Option(name: .customLong("script-root")) var scriptRoot: String = "."
        func run() throws { try DevHostCommands.setEmailFailing(false, scriptRoot: scriptRoot) }
    }

    struct RBACRestore: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rbac-restore", abstract: "Make the RBAC endpoint answer again.")
        @Option(name: .customLong("script-root")) var scriptRoot: String = "."
        func run() throws { try DevHostCommands.setRBACFailing(false, scriptRoot: scriptRoot) }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply database migrations to DATABASE_URL (idempotent).")

    @Option(name: .customLong("script-root"), help: "Folder holding local.settings.json.") var scriptRoot: String = "."

    func run() async throws {
        let logger = HostCLI.bootstrapLogging()
        do {
            let applied = try await StoreCommands.migrate(scriptRoot: scriptRoot, logger: logger)
            logger.info("migrations complete", metadata: ["applied": .string(applied.map(String.init).joined(separator: ","))])
        } catch {
            HostCLI.fail("migration failed: \(StoreCommands.reason(error))", logger: logger)
        }
    }
}

struct VerifyAudit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-audit",
        abstract: "Verify the audit hash chains once: exit 0 = no break, 1 = break found, 2 = could not run.")

    @Option(help: "Verify only this tenant's chain.") var tenant: String?
    @Flag(help: "Re-read every chain from seq 1 instead of from its checkpoint.") var full = false
    @Option(help: "A signed checkpoint saved earlier: check its signature, then that the live chain still extends it.")
    var checkpoint: String?
    @Option(name: .customLong("verifier-key"), help: "The verifier key for --checkpoint (default: the module's own key).")
    var verifierKey: String?
    @Option(name: .customLong("script-root"), help: "Folder holding local.settings.json.") var scriptRoot: String = "."

    func run() async throws {
        let logger = HostCLI.bootstrapLogging()
        if let checkpoint {
            let outcome: (consistent: Bool, message: String)
            do {
                outcome = try await StoreCommands.verifyCheckpoint(
                    scriptRoot: scriptRoot, checkpointFile: checkpoint, verifierKey: verifierKey, logger: logger)
            } catch {
                print("checkpoint verification could not run: \(StoreCommands.reason(error))")
                throw ExitCode(2)
            }
            print(outcome.message)
            if !outcome.consistent { throw ExitCode(1) }
            return
        }
        let outcome: (chains: Int, events: Int, breaks: [String])
        do {
            outcome = try await StoreCommands.verifyAudit(scriptRoot: scriptRoot, tenant: tenant, full: full, logger: logger)
        } catch {
            print("audit verification could not run: \(StoreCommands.reason(error))")
            throw ExitCode(2)
        }
        guard outcome.breaks.isEmpty else {
            for line in outcome.breaks { print(line) }
            throw ExitCode(1)
        }
        print("audit chains verified: \(outcome.chains) chains, \(outcome.events) events, no break")
    }
}

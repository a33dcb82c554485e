import ArgumentParser
import Foundation
import Logging

/// Options of `fnhost start`, shared with any executable built on the runtime.
public struct StartOptions: ParsableArguments {
    @Option(help: "Port for HTTP triggers (default: Host.LocalHttpPort from local.settings.json, else 7071; 0 picks a free port).")
    public var port: Int?

    @Option(help: "Address to listen on (default: Host.LocalHttpAddress, else 127.0.0.1).")
    public var address: String?

    @Option(name: .customLong("script-root"), help: "Folder holding function.json and local.settings.json.")
    public var scriptRoot: String = "."

    @Flag(help: "Hot reload: rebuild on changes to the sources, function.json or local.settings.json and switch to the new build on the same port.")
    public var watch = false

    @Option(name: .customLong("package-path"), help: "With --watch: the Swift package to watch and build (default: the script root).")
    public var packagePath: String?

    @Option(name: .customLong("build-command"), help: "With --watch: the incremental build, run in the package folder.")
    public var buildCommand: String = "swift build --product fnhost"

    @Option(name: .customLong("watch-binary"), help: "With --watch: the executable the build produces (default: PACKAGE/.build/debug/fnhost).")
    public var watchBinary: String?

    public init() {}
}

/// Options of `fnhost serve` (Azure custom-handler mode).
public struct ServeOptions: ParsableArguments {
    @Option(
        name: .customLong("script-root"),
        help: "The function app root (default: FUNCTIONS_APP_ROOT_PATH, else the current directory).")
    public var scriptRoot: String?

    public init() {}
}

/// Options of `fnhost package`.
public struct PackageOptions: ParsableArguments {
    @Option(help: "Folder to write the deployment layout to.")
    public var out: String

    @Option(name: .customLong("script-root"), help: "Folder holding function.json.")
    public var scriptRoot: String = "."

    @Option(help: "The handler binary to ship (default: this fnhost).")
    public var binary: String?

    @Flag(help: "Replace the output folder if it is not empty.")
    public var force = false

    @Option(help: "Also write the folder as one deployment zip (Flex Consumption), keeping fnhost executable.")
    public var zip: String?

    public init() {}
}

/// Process-level plumbing for the `fnhost` executable.
public enum HostCLI {
    /// Masks every secret value the host resolves in every log line of the process
    /// (process-wide, like the logging system it plugs into).
    public static let redactor = SecretRedactor()

    /// JSON lines on stdout for every logger in the process; `LOG_LEVEL` (trace…critical) sets the level.
    /// Call once, first thing.
    public static func bootstrapLogging(environment: [String: String] = ProcessInfo.processInfo.environment) -> Logger {
        let level = environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in
            JSONLogHandler(label: label, level: level, metadataProvider: TraceContext.metadataProvider, redactor: redactor)
        }
        return Logger(label: "fnhost")
    }

    /// `fnhost start`: builds the host from the script root and runs it until SIGTERM/SIGINT.
    /// A start-up problem is logged as one line and the process exits with status 1.
    public static func start(_ options: StartOptions, module: some FunctionModule, logger: Logger) async throws {
        if options.watch {
            try await watch(options, logger: logger)
            return
        }
        let host: FunctionHost
        do {
            host = try await FunctionHost.build(
                options: .init(scriptRoot: options.scriptRoot, port: options.port, address: options.address, mode: .emulator),
                module: module, logger: logger, redactor: redactor)
        } catch let error as FunctionHost.StartupError {
            fail(error.description, logger: logger)
        }
        try await host.run()
    }

    /// `fnhost start --watch`: the supervisor of hot reload on the emulator's address and port.
    static func watch(_ options: StartOptions, logger: Logger) async throws {
        let root = options.scriptRoot
        let local: LocalSettingsFile
        do {
            let path = URL(fileURLWithPath: root).appendingPathComponent("local.settings.json").path
            local = FileManager.default.fileExists(atPath: path) ? try LocalSettingsFile.load(path: path) : LocalSettingsFile()
        } catch {
            fail(error.description, logger: logger)
        }
        let port = options.port ?? local.localHTTPPort ?? 7071
        guard (0...65535).contains(port) else { fail("port \(port) is out of range", logger: logger) }
        let package = options.packagePath ?? root
        let binary = options.watchBinary ?? URL(fileURLWithPath: package).appendingPathComponent(".build/debug/fnhost").path
        let watch = WatchOptions(packagePath: package, scriptRoot: root, buildCommand: options.buildCommand, binary: binary)
        try await HotReload.run(watch, address: options.address ?? local.localHTTPAddress ?? "127.0.0.1", port: port, logger: logger)
    }

    /// `fnhost serve`: Azure custom-handler mode on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`.
    public static func serve(_ options: ServeOptions, module: some FunctionModule, logger: Logger) async throws {
        let environment = ProcessInfo.processInfo.environment
        let root = options.scriptRoot ?? environment["FUNCTIONS_APP_ROOT_PATH"].flatMap { $0.isEmpty ? nil : $0 } ?? "."
        let host: FunctionHost
        do {
            host = try await FunctionHost.build(
                options: .init(scriptRoot: root, mode: .customHandler), module: module, environment: environment,
                logger: logger, redactor: redactor)
        } catch let error as FunctionHost.StartupError {
            fail(error.description, logger: logger)
        }
        try await host.run()
    }

    /// `fnhost package`: checks the manifest against the module, then writes the deployment layout.
    public static func package(_ options: PackageOptions, module: some FunctionModule, logger: Logger) async throws {
        let manifest: FunctionManifest
        do {
            manifest = try FunctionManifest.load(path: URL(fileURLWithPath: options.scriptRoot).appendingPathComponent("function.json").path)
            // Only the handlers are needed: never touch the project's data while packaging.
            let settings = Settings.layered(
                module.settingDefaults, ProcessInfo.processInfo.environment, module.packagingSettings, ["ENVIRONMENT": "development"])
            var context = ModuleContext(settings: settings, environment: .development, mode: .customHandler, logger: logger)
            try await module.configure(&context)
            _ = try FunctionCatalog(specs: try manifest.specs(settings: settings), registry: context.functions)
        } catch let error as ManifestError {
            fail(error.description, logger: logger)
        }
        let binary = options.binary ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        do {
            try Packager.write(manifest: manifest, binary: binary, to: options.out, replace: options.force)
        } catch {
            fail(error.description, logger: logger)
        }
        if let zip = options.zip {
            do {
                try PackageZip.write(directory: options.out, to: zip)
            } catch {
                fail(error.description, logger: logger)
            }
        }
        logger.info(
            "Package written", metadata: ["out": .string(options.out), "functions": .stringConvertible(manifest.entries.count)])
    }

    /// Logs the reason, repeats it on stderr for humans, and exits 1.
    public static func fail(_ reason: String, logger: Logger) -> Never {
        logger.critical("Host start-up failed: \(redactor.redact(reason))")
        FileHandle.standardError.write(Data("fnhost: \(redactor.redact(reason))\n".utf8))
        exit(1)
    }
}

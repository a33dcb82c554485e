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

    public init() {}
}

/// Process-level plumbing for the `fnhost` executable.
public enum HostCLI {
    /// JSON lines on stdout for every logger in the process; `LOG_LEVEL` (trace…critical) sets the level.
    /// Call once, first thing.
    public static func bootstrapLogging(environment: [String: String] = ProcessInfo.processInfo.environment) -> Logger {
        let level = environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        return Logger(label: "fnhost")
    }

    /// `fnhost start`: builds the host from the script root and runs it until SIGTERM/SIGINT.
    /// A start-up problem is logged as one line and the process exits with status 1.
    public static func start(_ options: StartOptions, module: some FunctionModule, logger: Logger) async throws {
        let host: FunctionHost
        do {
            host = try await FunctionHost.build(
                options: .init(scriptRoot: options.scriptRoot, port: options.port, address: options.address, mode: .emulator),
                module: module, logger: logger)
        } catch let error as FunctionHost.StartupError {
            fail(error.description, logger: logger)
        }
        try await host.run()
    }

    /// Logs the reason, repeats it on stderr for humans, and exits 1.
    public static func fail(_ reason: String, logger: Logger) -> Never {
        logger.critical("Host start-up failed: \(reason)")
        FileHandle.standardError.write(Data("fnhost: \(reason)\n".utf8))
        exit(1)
    }
}

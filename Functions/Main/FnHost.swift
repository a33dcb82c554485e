import ArgumentParser
import FunctionRuntime
import Functions

@main
struct FnHost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fnhost",
        abstract: "A Swift function host in the Azure Functions shape.",
        subcommands: [Start.self, Serve.self, Package.self])
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

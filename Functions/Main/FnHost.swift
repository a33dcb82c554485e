import ArgumentParser
import FunctionRuntime
import Functions

@main
struct FnHost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fnhost",
        abstract: "A Swift function host in the Azure Functions shape.",
        subcommands: [Start.self])
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


import Foundation
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle

/// Builds a runnable host from a script root (function.json, local.settings.json), the
/// environment and a module: settings → manifest → handlers → catalog → HTTP server and scheduler.
public struct FunctionHost: Sendable {
    public struct Options: Sendable {
        public var scriptRoot: String
        public var port: Int?
        public var address: String?
        public var mode: HostingMode

        public init(scriptRoot: String = ".", port: Int? = nil, address: String? = nil, mode: HostingMode = .emulator) {
            self.scriptRoot = scriptRoot
            self.port = port
            self.address = address
            self.mode = mode
        }
    }

    /// Why the host refused to start; one line.
    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    public let catalog: FunctionCatalog
    public let settings: Settings
    public let scheduler: TimerScheduler
    public let state: HostState
    public let address: String
    public let port: Int
    public let mode: HostingMode
    let invoker: FunctionInvoker
    let moduleServices: [any Service]
    let startupTasks: [@Sendable () async throws -> Void]
    let logger: Logger
    let front: HTTPFront

    /// Loads and checks everything; throws `StartupError` naming what is wrong.
    public static func build(
        options: Options, module: some FunctionModule, environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger, redactor: SecretRedactor = SecretRedactor()
    ) async throws -> FunctionHost {
        let root = URL(fileURLWithPath: options.scriptRoot)
        let configuration = try await HostConfiguration.load(
            scriptRoot: options.scriptRoot, mode: options.mode, settingDefaults: module.settingDefaults,
            environment: environment, logger: logger, redactor: redactor)
        let settings = configuration.settings, local = configuration.local, deployment = configuration.deployment
        var logger = logger
        if let level = configuration.logLevel { logger.logLevel = level }
        let timeZone: TimeZone
        do {
            timeZone = try settings.scheduleTimeZone()
        } catch {
            throw StartupError(description: error.description)
        }
        let specs: [FunctionSpec]
        do {
            let topLevel = root.appendingPathComponent("function.json").path
            // Under Azure the app root holds one NAME/function.json per function (`fnhost package`).
            let manifest = options.mode == .customHandler && !FileManager.default.fileExists(atPath: topLevel)
                ? try FunctionManifest.loadDeployed(root: root.path)
                : try FunctionManifest.load(path: topLevel)
            specs = try manifest.specs(settings: settings, reservedRoutePrefixes: ["admin", "runtime", "metrics", "openapi.json"])
        } catch {
            throw StartupError(description: error.description)
        }

        let secrets = configuration.secrets
        let metricsToken: String?
        do {
            for name in module.requiredSecrets + [HostSettings.metricsToken.name] {
                let value = try await secrets.secret(named: name)
                if value == nil, deployment != .development, module.requiredSecrets.contains(name) {
                    throw SecretsError("required secret \(name) is not set (provider: \(secrets.providerName), then app settings)")
                }
            }
            metricsToken = try await secrets.secret(named: HostSettings.metricsToken.name)
        } catch let error as SecretsError {
            throw StartupError(description: error.description)
        }

        let registry = PrometheusCollectorRegistry()
        var context = ModuleContext(
            settings: settings, environment: deployment, mode: options.mode, logger: logger, secrets: secrets,
            metricsFactory: PrometheusMetricsFactory(registry: registry), scriptRoot: options.scriptRoot)
        do {
            try await module.configure(&context)
        } catch let error as ModuleConfigurationError {
            throw StartupError(description: error.description)
        }
        let catalog: FunctionCatalog
        do {
            catalog = try FunctionCatalog(specs: specs, registry: context.functions, timeZone: timeZone)
        } catch {
            throw StartupError(description: error.description)
        }

        let metrics = FunctionMetrics(catalog: catalog, registry: registry)
        let exporter: SpanExporter?
        do {
            exporter = try SpanExporter.make(settings: settings, logger: logger)
        } catch {
            throw StartupError(description: error.description)
        }
        if let exporter { context.services.append(exporter) }
        let invoker = FunctionInvoker(catalog: catalog, metrics: metrics, logger: logger, exporter: exporter)
        let scheduler = TimerScheduler(
            invoker: invoker, monitor: context.scheduleMonitor ?? InMemoryScheduleMonitor(), timeZone: timeZone,
            logger: logger)
        let state = HostState()
        let metricsAccess: MetricsAccess =
            if deployment == .development { .open } else if let token = metricsToken {
                .bearer(token: token)
            } else { .closed }
        let admin = options.mode == .emulator
            ? RuntimeEndpoints.Admin(scheduler: scheduler, state: state, hostID: Self.hostID(root: root))
            : nil
        let front = HTTPFront(
            invoker: invoker,
            runtimeEndpoints: RuntimeEndpoints(
                invoker: invoker, metricsAccess: metricsAccess, admin: admin,
                openAPI: {
                    var writer = JSONWriter(capacity: 16_384)
                    OpenAPIDocument.build(
                        catalog: catalog, operations: context.openAPIOperations, schemas: context.openAPISchemas,
                        title: "FunctionHost", version: RuntimeEndpoints.version, errorCodes: context.openAPIErrorCodes
                    ).write(to: &writer)
                    return writer.bytes
                }()),
            internalEndpoints: context.internalEndpoints, mode: options.mode, logger: logger)
        let port: Int
        switch options.mode {
        case .emulator:
            port = options.port ?? local.localHTTPPort ?? 7071
        case .customHandler:
            guard let text = settings[HostSettings.customHandlerPort.name], let parsed = Int(text) else {
                throw StartupError(description: "FUNCTIONS_CUSTOMHANDLER_PORT is not set to a port number")
            }
            port = parsed
        }
        guard (0...65535).contains(port) else { throw StartupError(description: "port \(port) is out of range") }
        return FunctionHost(
            catalog: catalog, settings: settings, scheduler: scheduler, state: state,
            address: options.mode == .customHandler ? "127.0.0.1" : options.address ?? local.localHTTPAddress ?? "127.0.0.1",
            port: port, mode: options.mode, invoker: invoker, moduleServices: context.services, startupTasks: context.startupTasks, logger: logger,
            front: front)
    }

    /// The Hummingbird application serving the functions, with the module's services and the scheduler.
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let state = state
        let logger = logger
        let catalog = catalog
        let address = address
        let mode = mode
        var app = Application(
            responder: front,
            server: .http1(configuration: .init(additionalChannelHandlers: [TransportErrorResponder()], idleTimeout: .seconds(75))),
            configuration: ApplicationConfiguration(address: .hostname(address, port: port), serverName: nil),
            // Under Azure the host fires timers (POST /{FunctionName}); only the emulator schedules them.
            services: moduleServices + (mode == .emulator ? [scheduler] : []),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                state.set(.running)
                Self.logStartup(catalog: catalog, address: address, port: port, logger: logger)
                await onServerRunning(port)
            },
            logger: logger)
        for task in startupTasks { app.beforeServerStarts(perform: task) }
        return app
    }

    /// Runs until SIGTERM/SIGINT, then drains: the HTTP server stops accepting and finishes
    /// in-flight requests, the scheduler lets running invocations end, then module services stop.
    public func run() async throws {
        var configuration = ServiceGroupConfiguration(
            services: [.init(service: application()), .init(service: StateTracker(state: state))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(30)
        try await ServiceGroup(configuration: configuration).run()
        logger.info("Host stopped")
    }

    static func logStartup(catalog: FunctionCatalog, address: String, port: Int, logger: Logger) {
        logger.info("Host started", metadata: ["address": .string(address), "port": .stringConvertible(port)])
        for function in catalog.functions {
            switch function.spec.trigger {
            case .http(let http):
                let methods = (http.methods ?? []).map(\.rawValue).joined(separator: ",")
                logger.info(
                    "\(function.name): [\(methods.isEmpty ? "ALL" : methods)] http://\(address):\(port)/\(http.route.template)",
                    metadata: ["function": .string(function.name)])
            case .timer(let timer):
                logger.info(
                    "\(function.name): timerTrigger (\(timer.schedule.expression))",
                    metadata: ["function": .string(function.name)])
            }
        }
    }

    private static func hostID(root: URL) -> String {
        let name = root.standardizedFileURL.lastPathComponent.lowercased()
        let cleaned = name.filter { $0.isLetter || $0.isNumber || $0 == "-" }
        return cleaned.isEmpty ? "fnhost" : String(cleaned.prefix(32))
    }
}

/// Marks the host `Stopping` as soon as graceful shutdown begins (it is last in the group,
/// so it is the first to hear of it).
private struct StateTracker: Service {
    let state: HostState

    func run() async throws {
        try? await gracefulShutdown()
        state.set(.stopping)
    }
}

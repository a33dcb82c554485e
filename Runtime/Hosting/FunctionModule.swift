import CoreMetrics
import Logging
import ServiceLifecycle

public enum HostingMode: String, Sendable {
    /// `fnhost start`: the local emulator, with the admin API.
    case emulator
    /// `fnhost serve`: under the Azure Functions host.
    case customHandler
}

/// What a module is given at start-up and fills in: its handlers and its long-lived services.
public struct ModuleContext: Sendable {
    public let settings: Settings
    public let environment: DeploymentEnvironment
    public let mode: HostingMode
    public let logger: Logger
    /// The folder holding function.json; project-local state (e.g. the development host's) lives below it.
    public let scriptRoot: String
    /// The configured secrets provider, then the app settings.
    public let secrets: Secrets
    public var functions = FunctionRegistry()
    /// Started before the HTTP server and stopped after it (reverse order), e.g. a database pool.
    public var services: [any Service] = []
    /// Replaces the in-memory schedule monitor, e.g. with one shared through a database.
    public var scheduleMonitor: (any ScheduleMonitor)?
    /// Where the module's own metrics go (the host's Prometheus registry).
    public let metricsFactory: any MetricsFactory
    /// Endpoints outside the manifest served under a path prefix (e.g. the development host).
    public private(set) var internalEndpoints: [(prefix: String, handler: any HTTPFunction)] = []

    /// OpenAPI descriptions of HTTP functions, by function name, and shared schemas (`#/components/schemas/NAME`).
    public private(set) var openAPIOperations: [String: OpenAPIOperation] = [:]
    public private(set) var openAPISchemas: [String: JSONValue] = [:]

    public mutating func describe(_ function: String, _ operation: OpenAPIOperation) {
        openAPIOperations[function] = operation
    }

    public mutating func addSchema(_ name: String, _ schema: JSONValue) {
        openAPISchemas[name] = schema
    }

    /// The module's error codes by HTTP status, for the OpenAPI document (the runtime adds its own).
    public private(set) var openAPIErrorCodes: [Int: [String]] = [:]

    public mutating func describeErrors(_ codes: [Int: [String]]) {
        openAPIErrorCodes.merge(codes) { existing, added in existing + added.filter { !existing.contains($0) } }
    }

    /// Run once the module's services are up and before the server accepts requests (e.g. migrations).
    public private(set) var startupTasks: [@Sendable () async throws -> Void] = []

    public mutating func beforeServing(_ task: @escaping @Sendable () async throws -> Void) {
        startupTasks.append(task)
    }

    public mutating func addInternalEndpoint(prefix: String, handler: some HTTPFunction) {
        internalEndpoints.append((prefix, handler))
    }

    public init(
        settings: Settings, environment: DeploymentEnvironment, mode: HostingMode, logger: Logger, secrets: Secrets? = nil,
        metricsFactory: (any MetricsFactory)? = nil, scriptRoot: String = "."
    ) {
        self.scriptRoot = scriptRoot
        self.metricsFactory = metricsFactory ?? NOOPMetricsHandler.instance
        self.settings = settings
        self.environment = environment
        self.mode = mode
        self.logger = logger
        self.secrets = secrets ?? Secrets(providers: [EnvironmentSecretsProvider(settings: settings)], redactor: SecretRedactor())
    }
}

/// A set of functions the host runs. The runtime knows nothing else about it.
public protocol FunctionModule: Sendable {
    /// Defaults for the module's settings; `local.settings.json` and the environment override them.
    /// `ENVIRONMENT` is the deployment's alone: a default given for it here is ignored
    /// (`HostConfiguration.deploymentOnlySettings`).
    var settingDefaults: [String: String] { get }

    /// Secrets that must resolve before the host starts in `staging` and `production`.
    var requiredSecrets: [String] { get }

    /// Settings under which `configure` registers its handlers without touching the project's data or
    /// services (`fnhost package` checks the manifest this way): e.g. an in-memory database.
    var packagingSettings: [String: String] { get }

    /// Registers every handler named in function.json, and the services they need.
    func configure(_ context: inout ModuleContext) async throws
}

extension FunctionModule {
    public var requiredSecrets: [String] { [] }
    public var packagingSettings: [String: String] { [:] }
}

/// A module's refusal to start (bad or missing settings); reported as one line.
public struct ModuleConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

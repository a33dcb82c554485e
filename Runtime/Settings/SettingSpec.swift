/// One setting declared once: its name, whether it is a secret, its default and its bounds. The
/// runtime's and the module's settings are read through their declarations (`HostSettings`,
/// `ModuleSettings`), and docs/settings.md is checked against them by a test, so a name, a default or
/// a range cannot drift between the code and the documentation.
public struct SettingSpec: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Any text (a URL, a name, a list).
        case text
        /// A number within the range (`Double`).
        case number(ClosedRange<Double>)
        /// A whole number of seconds within the range.
        case seconds(ClosedRange<Int>)
    }

    public let name: String
    public let kind: Kind
    /// Read through the secrets provider (Key Vault, files), never logged.
    public let secret: Bool
    /// The default as docs/settings.md writes it; nil: none (unset unless given).
    public let defaultValue: String?

    public init(_ name: String, _ kind: Kind = .text, secret: Bool = false, default defaultValue: String? = nil) {
        self.name = name
        self.kind = kind
        self.secret = secret
        self.defaultValue = defaultValue
    }

    /// The setting's text (blank counts as unset), else the default.
    public func text(_ settings: Settings) -> String? {
        settings.nonEmpty(name) ?? defaultValue
    }

    /// A `.number` setting, checked against its range; a default that is not a number is a programming error caught by tests.
    public func number(_ settings: Settings) throws(SettingsError) -> Double {
        guard case .number(let range) = kind else { throw SettingsError("\(name) is not a number setting") }
        guard let text = text(settings) else { throw SettingsError("\(name) must be set") }
        guard let value = Double(text), range.contains(value) else {
            throw SettingsError("\(name) must be a number from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound))")
        }
        return value
    }

    /// A `.seconds` setting, checked against its range.
    public func seconds(_ settings: Settings) throws(SettingsError) -> Int {
        guard case .seconds(let range) = kind else { throw SettingsError("\(name) is not a seconds setting") }
        guard let text = text(settings) else { throw SettingsError("\(name) must be set") }
        guard text.utf8.count <= 12, let value = Int(text), range.contains(value) else {
            throw SettingsError("\(name) must be a whole number of seconds from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

/// The runtime's own settings (docs/settings.md).
public enum HostSettings {
    public static let environment = SettingSpec("ENVIRONMENT")
    public static let logLevel = SettingSpec("LOG_LEVEL", default: "info")
    public static let timeZone = SettingSpec("WEBSITE_TIME_ZONE")
    public static let metricsToken = SettingSpec("METRICS_TOKEN", secret: true)
    public static let secretsProvider = SettingSpec("SECRETS_PROVIDER", default: "env")
    public static let secretsRefresh = SettingSpec("SECRETS_REFRESH_SECONDS", .seconds(1...86_400), default: "300")
    public static let customHandlerPort = SettingSpec("FUNCTIONS_CUSTOMHANDLER_PORT")
    public static let appRoot = SettingSpec("FUNCTIONS_APP_ROOT_PATH")
    /// Key Vault credentials: a managed identity, or client credentials.
    public static let identityEndpoint = SettingSpec("IDENTITY_ENDPOINT")
    public static let identityHeader = SettingSpec("IDENTITY_HEADER", secret: true)
    public static let azureTenantID = SettingSpec("AZURE_TENANT_ID")
    public static let azureClientID = SettingSpec("AZURE_CLIENT_ID")
    public static let azureClientSecret = SettingSpec("AZURE_CLIENT_SECRET", secret: true)
    public static let azureAuthorityHost = SettingSpec("AZURE_AUTHORITY_HOST", default: "https://login.microsoftonline.com")
    /// Span export (docs/observability.md).
    public static let otlpEndpoint = SettingSpec("OTEL_EXPORTER_OTLP_ENDPOINT")
    public static let otlpTracesEndpoint = SettingSpec("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    public static let otlpHeaders = SettingSpec("OTEL_EXPORTER_OTLP_HEADERS", secret: true)
    public static let otlpProtocol = SettingSpec("OTEL_EXPORTER_OTLP_PROTOCOL", default: "http/protobuf")
    public static let otlpTracesProtocol = SettingSpec("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", default: "http/protobuf")
    public static let serviceName = SettingSpec("OTEL_SERVICE_NAME", default: "fnhost")
    public static let resourceAttributes = SettingSpec("OTEL_RESOURCE_ATTRIBUTES")
    public static let exportDelay = SettingSpec("OTEL_BSP_SCHEDULE_DELAY", .number(10...60_000), default: "1000")
    public static let sdkDisabled = SettingSpec("OTEL_SDK_DISABLED", default: "false")
    public static let tracesExporter = SettingSpec("OTEL_TRACES_EXPORTER", default: "otlp")

    public static let all: [SettingSpec] = [
        environment, logLevel, timeZone, metricsToken, secretsProvider, secretsRefresh, customHandlerPort, appRoot, identityEndpoint,
        identityHeader, azureTenantID, azureClientID, azureClientSecret, azureAuthorityHost, otlpEndpoint, otlpTracesEndpoint,
        otlpHeaders, otlpProtocol, otlpTracesProtocol, serviceName, resourceAttributes, exportDelay, sdkDisabled, tracesExporter,
    ]
}

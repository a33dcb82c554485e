import Foundation

/// App settings: defaults declared by the module, then `local.settings.json` `Values`
/// (emulator only), then the process environment, which wins.
public struct Settings: Sendable {
    private var values: [String: String]

    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    public subscript(name: String) -> String? {
        values[name]
    }

    /// A setting that is present and not blank.
    public func nonEmpty(_ name: String) -> String? {
        guard let value = values[name], !value.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
        return value
    }

    public var all: [String: String] { values }

    /// A copy with one setting changed.
    public func setting(_ name: String, to value: String) -> Settings {
        var copy = values
        copy[name] = value
        return Settings(copy)
    }

    /// Layers settings: later sources override earlier ones.
    public static func layered(_ sources: [String: String]...) -> Settings {
        var merged: [String: String] = [:]
        for source in sources {
            merged.merge(source) { _, new in new }
        }
        return Settings(merged)
    }

    /// Replaces every `%NAME%` with the setting NAME, as Azure does in function.json values.
    public func resolvingPlaceholders(in text: String) throws(SettingsError) -> String {
        guard text.contains("%") else { return text }
        var result = ""
        var rest = text[...]
        while let open = rest.firstIndex(of: "%") {
            result += rest[..<open]
            let afterOpen = rest.index(after: open)
            guard let close = rest[afterOpen...].firstIndex(of: "%") else {
                result += rest[open...]
                return result
            }
            let name = String(rest[afterOpen..<close])
            guard !name.isEmpty else {
                result += "%"
                rest = rest[rest.index(after: close)...]
                continue
            }
            guard let value = values[name] else {
                throw SettingsError("setting '\(name)' referenced as %\(name)% is not set")
            }
            result += value
            rest = rest[rest.index(after: close)...]
        }
        result += rest
        return result
    }

    /// `ENVIRONMENT`: `development` (default), `staging` or `production`.
    /// `ENVIRONMENT`, else `fallback`: development under `fnhost start`, production under
    /// `fnhost serve` (a deployment that forgot the setting must not run with development's defaults).
    public func deploymentEnvironment(default fallback: DeploymentEnvironment = .development) throws(SettingsError) -> DeploymentEnvironment {
        let raw = nonEmpty(HostSettings.environment.name) ?? fallback.rawValue
        guard let environment = DeploymentEnvironment(rawValue: raw.lowercased()) else {
            throw SettingsError("ENVIRONMENT must be development, staging or production, not '\(raw)'")
        }
        return environment
    }

    /// `WEBSITE_TIME_ZONE` for timer schedules; UTC when unset.
    public func scheduleTimeZone() throws(SettingsError) -> TimeZone {
        guard let name = nonEmpty(HostSettings.timeZone.name) else { return .gmt }
        guard let zone = TimeZone(identifier: name) else {
            throw SettingsError("WEBSITE_TIME_ZONE '\(name)' is not a known time zone identifier")
        }
        return zone
    }
}

public enum DeploymentEnvironment: String, Sendable {
    case development, staging, production
}

public struct SettingsError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `local.settings.json`, as Azure Functions Core Tools reads it.
public struct LocalSettingsFile: Sendable, Equatable {
    public var values: [String: String]
    public var localHTTPPort: Int?
    public var localHTTPAddress: String?

    public init(values: [String: String] = [:], localHTTPPort: Int? = nil, localHTTPAddress: String? = nil) {
        self.values = values
        self.localHTTPPort = localHTTPPort
        self.localHTTPAddress = localHTTPAddress
    }

    /// Reads the file if it exists; a missing file is an empty one.
    public static func load(path: String) throws(SettingsError) -> LocalSettingsFile {
        guard FileManager.default.fileExists(atPath: path) else { return LocalSettingsFile() }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SettingsError("cannot read \(path)")
        }
        return try parse(data, path: path)
    }

    public static func parse(_ data: Data, path: String = "local.settings.json") throws(SettingsError) -> LocalSettingsFile {
        let document: JSONValue
        do {
            document = try JSONReader.parse(data)
        } catch {
            throw SettingsError("\(path) is not valid JSON")
        }
        guard case .object(let root) = document else { throw SettingsError("\(path) must hold a JSON object") }
        if root["IsEncrypted"]?.boolValue == true {
            throw SettingsError("\(path) has IsEncrypted: true; encrypted settings are not supported, store plain values")
        }
        var file = LocalSettingsFile()
        if let values = root["Values"] {
            guard case .object(let object) = values else { throw SettingsError("\(path): Values must be an object") }
            for (name, value) in object {
                switch value {
                case .string(let text): file.values[name] = text
                case .number, .bool: file.values[name] = Self.text(of: value)
                default: throw SettingsError("\(path): Values.\(name) must be a string")
                }
            }
        }
        if let host = root["Host"] {
            guard case .object(let object) = host else { throw SettingsError("\(path): Host must be an object") }
            switch object["LocalHttpPort"] {
            case nil, .null?: break
            case .number(let number)?:
                guard number.rounded() == number, (1...65535).contains(number) else {
                    throw SettingsError("\(path): Host.LocalHttpPort must be a port number")
                }
                file.localHTTPPort = Int(number)
            case .string(let text)?:
                guard let port = Int(text), (1...65535).contains(port) else {
                    throw SettingsError("\(path): Host.LocalHttpPort must be a port number")
                }
                file.localHTTPPort = port
            default: throw SettingsError("\(path): Host.LocalHttpPort must be a port number")
            }
            file.localHTTPAddress = object["LocalHttpAddress"]?.stringValue
        }
        return file
    }

    private static func text(of value: JSONValue) -> String {
        switch value {
        case .bool(let flag): flag ? "true" : "false"
        case .number(let number): number.rounded() == number ? String(Int64(number)) : String(number)
        default: ""
        }
    }
}

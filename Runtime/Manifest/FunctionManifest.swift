import Foundation
import HTTPTypes

/// The top-level `function.json`: every function with its Azure-style bindings, as written.
public struct FunctionManifest: Sendable {
    public struct Entry: Sendable {
        public let name: String
        /// The entry exactly as in the file (`bindings`, and `disabled` if present);
        /// `fnhost package` writes it out unchanged as `NAME/function.json`.
        public let document: JSONValue
    }

    /// Sorted by name.
    public let entries: [Entry]

    public static func load(path: String) throws(ManifestError) -> FunctionManifest {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ManifestError(function: nil, reason: "cannot read \(path)")
        }
        return try parse(data)
    }

    /// The deployed layout Azure reads: one `NAME/function.json` per function under `root`.
    public static func loadDeployed(root: String) throws(ManifestError) -> FunctionManifest {
        let fileManager = FileManager.default
        let names = ((try? fileManager.contentsOfDirectory(atPath: root)) ?? []).sorted()
        var functions: [String: JSONValue] = [:]
        for name in names {
            let path = URL(fileURLWithPath: root).appendingPathComponent(name).appendingPathComponent("function.json").path
            guard fileManager.fileExists(atPath: path) else { continue }
            guard let data = fileManager.contents(atPath: path),
                let document = try? JSONReader.parse(data)
            else {
                throw ManifestError(function: name, reason: "\(name)/function.json is not valid JSON")
            }
            functions[name] = document
        }
        guard !functions.isEmpty else {
            throw ManifestError(function: nil, reason: "no function.json in \(root) nor in any folder below it")
        }
        var encoded = JSONWriter()
        JSONValue.object(["functions": .object(functions)]).write(to: &encoded)
        return try parse(Data(encoded.bytes))
    }

    public static func parse(_ data: Data) throws(ManifestError) -> FunctionManifest {
        let document: JSONValue
        do {
            document = try JSONReader.parse(data)
        } catch {
            throw ManifestError(function: nil, reason: "function.json is not valid JSON")
        }
        guard case .object(let functions)? = document["functions"] else {
            throw ManifestError(function: nil, reason: "function.json must have a \"functions\" object")
        }
        var seen: [String: String] = [:]
        for name in functions.keys.sorted() {
            if let other = seen[name.lowercased()] {
                throw ManifestError(function: name, reason: "declared twice (as '\(other)' and '\(name)')")
            }
            seen[name.lowercased()] = name
        }
        return FunctionManifest(entries: functions.keys.sorted().map { Entry(name: $0, document: functions[$0] ?? .null) })
    }

    /// Interprets every entry with `%SETTING%` placeholders resolved.
    public func specs(settings: Settings, reservedRoutePrefixes: [String] = []) throws(ManifestError) -> [FunctionSpec] {
        var specs: [FunctionSpec] = []
        for entry in entries {
            specs.append(try FunctionSpec(entry: entry, settings: settings, reservedRoutePrefixes: reservedRoutePrefixes))
        }
        return specs
    }
}

/// Why the manifest cannot be loaded; always one line naming the function when there is one.
public struct ManifestError: Error, Sendable, CustomStringConvertible, Equatable {
    public let function: String?
    public let reason: String

    public init(function: String?, reason: String) {
        self.function = function
        self.reason = reason
    }

    public var description: String {
        if let function { return "function '\(function)': \(reason)" }
        return reason
    }
}

/// One function from the manifest, interpreted.
public struct FunctionSpec: Sendable {
    public enum Trigger: Sendable {
        case http(HTTPTriggerSpec)
        case timer(TimerTriggerSpec)

        public var bindingType: String {
            switch self {
            case .http: "httpTrigger"
            case .timer: "timerTrigger"
            }
        }
    }

    public let name: String
    /// The entry as written in function.json (placeholders not resolved).
    public let document: JSONValue
    public let trigger: Trigger
    public let disabled: Bool

    public var httpTrigger: HTTPTriggerSpec? {
        if case .http(let spec) = trigger { return spec }
        return nil
    }

    public var timerTrigger: TimerTriggerSpec? {
        if case .timer(let spec) = trigger { return spec }
        return nil
    }

    static let knownBindingTypes = ["httpTrigger", "http", "timerTrigger"]
    static let knownMethods: [String: HTTPRequest.Method] = [
        "get": .get, "post": .post, "put": .put, "patch": .patch, "delete": .delete, "head": .head,
        "options": .options, "trace": .trace,
    ]

    init(entry: FunctionManifest.Entry, settings: Settings, reservedRoutePrefixes: [String]) throws(ManifestError) {
        let name = entry.name
        func fail(_ reason: String) -> ManifestError { ManifestError(function: name, reason: reason) }

        guard Self.isValidFunctionName(name) else {
            throw fail("name must start with a letter and hold only letters, digits, '_' or '-' (at most 128), and not be 'host'")
        }
        guard case .object(let object) = entry.document else { throw fail("entry must be an object") }
        guard case .array(let rawBindings)? = object["bindings"], !rawBindings.isEmpty else {
            throw fail("needs a non-empty \"bindings\" array")
        }
        self.name = name
        self.document = entry.document
        switch object["disabled"] {
        case nil, .null?: disabled = false
        case .bool(let flag)?: disabled = flag
        case .string(let text)?:
            let resolved: String
            do { resolved = try settings.resolvingPlaceholders(in: text) } catch { throw fail(error.description) }
            guard let flag = Bool(resolved.lowercased()) else { throw fail("\"disabled\" must be true or false") }
            disabled = flag
        default: throw fail("\"disabled\" must be true or false")
        }

        var bindings: [[String: JSONValue]] = []
        for raw in rawBindings {
            guard case .object(let binding) = raw else { throw fail("every binding must be an object") }
            var resolved: [String: JSONValue] = [:]
            for (key, value) in binding {
                do {
                    resolved[key] = try Self.resolve(value, settings: settings)
                } catch {
                    throw fail("binding \(key): \(error.description)")
                }
            }
            guard let type = resolved["type"]?.stringValue else { throw fail("a binding has no \"type\"") }
            guard Self.knownBindingTypes.contains(type) else {
                throw fail(
                    "binding type '\(type)' is not supported (supported: \(Self.knownBindingTypes.joined(separator: ", ")))")
            }
            guard let direction = resolved["direction"]?.stringValue, ["in", "out"].contains(direction) else {
                throw fail("binding '\(type)' needs \"direction\" \"in\" or \"out\"")
            }
            let expectedDirection = type == "http" ? "out" : "in"
            guard direction == expectedDirection else {
                throw fail("binding '\(type)' must have direction \"\(expectedDirection)\"")
            }
            guard let bindingName = resolved["name"]?.stringValue, Self.isValidBindingName(bindingName) else {
                throw fail("binding '\(type)' needs a \"name\" of letters and digits starting with a letter, or $return")
            }
            bindings.append(resolved)
        }

        let triggers = bindings.filter { ($0["type"]?.stringValue ?? "").hasSuffix("Trigger") }
        guard triggers.count == 1, let trigger = triggers.first else {
            throw fail("needs exactly one trigger binding, found \(triggers.count)")
        }
        let httpOutputs = bindings.filter { $0["type"]?.stringValue == "http" }
        let bindingName = trigger["name"]?.stringValue ?? ""
        switch trigger["type"]?.stringValue {
        case "httpTrigger":
            guard httpOutputs.count == 1 else { throw fail("an httpTrigger function needs exactly one \"http\" output binding") }
            self.trigger = .http(
                try HTTPTriggerSpec(
                    binding: trigger, bindingName: bindingName,
                    outputName: httpOutputs.first?["name"]?.stringValue ?? "res", functionName: name,
                    reservedRoutePrefixes: reservedRoutePrefixes, fail: fail))
        default:
            guard httpOutputs.isEmpty else { throw fail("a timerTrigger function cannot have an \"http\" output binding") }
            self.trigger = .timer(try TimerTriggerSpec(binding: trigger, bindingName: bindingName, fail: fail))
        }
    }

    private static func resolve(_ value: JSONValue, settings: Settings) throws(SettingsError) -> JSONValue {
        switch value {
        case .string(let text): return .string(try settings.resolvingPlaceholders(in: text))
        case .array(let values):
            var resolved: [JSONValue] = []
            for element in values { resolved.append(try resolve(element, settings: settings)) }
            return .array(resolved)
        default: return value
        }
    }

    static func isValidFunctionName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter, name.count <= 128, name.lowercased() != "host"
        else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }

    static func isValidBindingName(_ name: String) -> Bool {
        if name == "$return" { return true }
        guard let first = name.first, first.isASCII, first.isLetter, name.count <= 128 else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
    }
}

public struct HTTPTriggerSpec: Sendable {
    /// nil accepts every method, as Azure does when `methods` is omitted.
    public let methods: [HTTPRequest.Method]?
    public let route: RouteTemplate
    public let authLevel: String
    public let bindingName: String
    /// The `http` output binding's name (`res`, or `$return`), where a custom handler puts the response.
    public let outputName: String

    init(
        binding: [String: JSONValue], bindingName: String, outputName: String, functionName: String,
        reservedRoutePrefixes: [String], fail: (String) -> ManifestError
    ) throws(ManifestError) {
        self.bindingName = bindingName
        self.outputName = outputName
        switch binding["methods"] {
        case nil, .null?:
            methods = nil
        case .array(let values)?:
            var methods: [HTTPRequest.Method] = []
            for value in values {
                guard let text = value.stringValue, let method = FunctionSpec.knownMethods[text.lowercased()] else {
                    throw fail("method \(value) is not an HTTP method")
                }
                if !methods.contains(method) { methods.append(method) }
            }
            guard !methods.isEmpty else { throw fail("\"methods\" is empty") }
            self.methods = methods
        default:
            throw fail("\"methods\" must be an array of HTTP methods")
        }
        let routeText: String
        switch binding["route"] {
        case nil, .null?: routeText = functionName
        case .string(let text)?: routeText = text
        default: throw fail("\"route\" must be a string")
        }
        do {
            route = try RouteTemplate(parsing: routeText)
        } catch {
            throw fail("route '\(routeText)' does not parse: \(error.description)")
        }
        if case .literal(let first)? = route.segments.first,
            let reserved = reservedRoutePrefixes.first(where: { $0.lowercased() == first.lowercased() })
        {
            throw fail("route '\(routeText)' is reserved for the host ('\(reserved)')")
        }
        switch binding["authLevel"] {
        case nil, .null?: authLevel = "function"
        case .string(let level)? where ["anonymous", "function", "admin"].contains(level.lowercased()):
            authLevel = level.lowercased()
        default: throw fail("\"authLevel\" must be anonymous, function or admin")
        }
    }

    func accepts(_ method: HTTPRequest.Method) -> Bool {
        methods?.contains(method) ?? true
    }

    func overlaps(_ other: HTTPTriggerSpec) -> Bool {
        guard let mine = methods, let theirs = other.methods else { return true }
        return mine.contains(where: theirs.contains)
    }
}

public struct TimerTriggerSpec: Sendable {
    public let schedule: CronSchedule
    public let runOnStartup: Bool
    public let useMonitor: Bool
    public let bindingName: String

    init(binding: [String: JSONValue], bindingName: String, fail: (String) -> ManifestError) throws(ManifestError) {
        self.bindingName = bindingName
        guard let text = binding["schedule"]?.stringValue else { throw fail("timerTrigger needs a \"schedule\"") }
        do {
            schedule = try CronSchedule(parsing: text)
        } catch {
            throw fail("schedule '\(text)' does not parse: \(error.description)")
        }
        runOnStartup = try Self.flag(binding["runOnStartup"], name: "runOnStartup", default: false, fail: fail)
        useMonitor = try Self.flag(binding["useMonitor"], name: "useMonitor", default: true, fail: fail)
    }

    private static func flag(
        _ value: JSONValue?, name: String, default defaultValue: Bool, fail: (String) -> ManifestError
    ) throws(ManifestError) -> Bool {
        switch value {
        case nil, .null?: return defaultValue
        case .bool(let flag)?: return flag
        case .string(let text)? where Bool(text.lowercased()) != nil: return Bool(text.lowercased()) ?? defaultValue
        default: throw fail("\"\(name)\" must be true or false")
        }
    }
}

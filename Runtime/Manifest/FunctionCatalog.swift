import Foundation
import HTTPTypes

/// The manifest matched against the registered handlers: what the host runs.
///
/// Building it is the start-up check: a manifest entry without a handler, a handler without
/// an entry, a trigger of the wrong kind, two functions claiming one method and route, or a
/// schedule that never fires stops start-up with a reason naming the function.
public struct FunctionCatalog: Sendable {
    public struct Function: Sendable {
        public let spec: FunctionSpec
        public let handler: FunctionRegistry.Handler
        /// Position in `functions`; also indexes per-function metrics.
        public let index: Int

        public var name: String { spec.name }
    }

    public let functions: [Function]
    let router: FunctionRouter
    private let byName: [String: Int]

    public init(specs: [FunctionSpec], registry: FunctionRegistry, timeZone: TimeZone = .gmt, now: Date = Date())
        throws(ManifestError)
    {
        if let duplicate = registry.duplicates.first {
            throw ManifestError(function: duplicate, reason: "has more than one registered handler")
        }
        var functions: [Function] = []
        var specNames: Set<String> = []
        for spec in specs.sorted(by: { $0.name < $1.name }) {
            specNames.insert(spec.name.lowercased())
            guard let handler = registry.handler(named: spec.name) else {
                throw ManifestError(function: spec.name, reason: "is in function.json but no handler is registered for it")
            }
            switch (spec.trigger, handler) {
            case (.http, .http), (.timer, .timer): break
            default:
                throw ManifestError(
                    function: spec.name,
                    reason: "has a \(spec.trigger.bindingType) binding but its handler is a \(handler.kind) handler")
            }
            if let timer = spec.timerTrigger, !spec.disabled, timer.schedule.next(after: now, in: timeZone) == nil {
                throw ManifestError(function: spec.name, reason: "schedule '\(timer.schedule)' never fires")
            }
            functions.append(Function(spec: spec, handler: handler, index: functions.count))
        }
        for name in registry.names where !specNames.contains(name.lowercased()) {
            throw ManifestError(function: name, reason: "has a registered handler but no entry in function.json")
        }
        let http = functions.filter { $0.spec.httpTrigger != nil && !$0.spec.disabled }
        for (offset, first) in http.enumerated() {
            for second in http[(offset + 1)...] {
                guard let a = first.spec.httpTrigger, let b = second.spec.httpTrigger else { continue }
                if a.route.shape == b.route.shape, a.overlaps(b) {
                    throw ManifestError(
                        function: second.name,
                        reason: "route '\(b.route)' clashes with function '\(first.name)' (route '\(a.route)') on the same method")
                }
            }
        }
        self.functions = functions
        self.router = FunctionRouter(functions: http)
        self.byName = Dictionary(uniqueKeysWithValues: functions.map { ($0.name.lowercased(), $0.index) })
    }

    public func function(named name: String) -> Function? {
        byName[name.lowercased()].map { functions[$0] }
    }
}

/// Finds the HTTP function for a method and path.
struct FunctionRouter: Sendable {
    enum Resolution {
        case matched(index: Int, parameters: [String: String])
        case methodNotAllowed([HTTPRequest.Method])
        case notFound
    }

    private struct Route: Sendable {
        let index: Int
        let trigger: HTTPTriggerSpec
    }

    private let routes: [Route]

    init(functions: [FunctionCatalog.Function]) {
        routes = functions.compactMap { function in
            function.spec.httpTrigger.map { Route(index: function.index, trigger: $0) }
        }.sorted { $0.trigger.route.precedence.lexicographicallyPrecedes($1.trigger.route.precedence) }
    }

    func resolve(method: HTTPRequest.Method, path: Substring) -> Resolution {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)[...]
        var allowed: [HTTPRequest.Method] = []
        var pathMatched = false
        for route in routes {
            guard let parameters = route.trigger.route.match(segments) else { continue }
            if route.trigger.accepts(method) {
                return .matched(index: route.index, parameters: parameters)
            }
            pathMatched = true
            for candidate in route.trigger.methods ?? [] where !allowed.contains(candidate) {
                allowed.append(candidate)
            }
        }
        return pathMatched ? .methodNotAllowed(allowed) : .notFound
    }
}

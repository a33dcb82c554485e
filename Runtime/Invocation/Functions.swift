import Foundation
import Logging

/// An HTTP-triggered function: parse input, do one thing, answer.
public protocol HTTPFunction: Sendable {
    func handle(_ request: FunctionRequest) async throws -> FunctionResponse
}

/// A timer-triggered function.
public protocol TimerFunction: Sendable {
    func run(_ timer: TimerInfo, context: TimerContext) async throws
}

/// What Azure passes a timer function: whether the occurrence is late, and the schedule monitor's view.
public struct TimerInfo: Sendable, Equatable {
    public var isPastDue: Bool
    public var scheduleStatus: ScheduleStatus?

    public init(isPastDue: Bool, scheduleStatus: ScheduleStatus? = nil) {
        self.isPastDue = isPastDue
        self.scheduleStatus = scheduleStatus
    }
}

/// The schedule monitor's record of a timer (Azure's `ScheduleStatus`).
public struct ScheduleStatus: Sendable, Equatable {
    public var last: Date
    public var next: Date
    public var lastUpdated: Date

    public init(last: Date, next: Date, lastUpdated: Date) {
        self.last = last
        self.next = next
        self.lastUpdated = lastUpdated
    }
}

public struct TimerContext: Sendable {
    public var functionName: String
    public var invocationID: String
    public var logger: Logger

    public init(functionName: String, invocationID: String, logger: Logger) {
        self.functionName = functionName
        self.invocationID = invocationID
        self.logger = logger
    }
}

/// Adapts a closure to `HTTPFunction`.
public struct HTTPFunctionClosure: HTTPFunction {
    let body: @Sendable (FunctionRequest) async throws -> FunctionResponse

    public init(_ body: @escaping @Sendable (FunctionRequest) async throws -> FunctionResponse) {
        self.body = body
    }

    public func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        try await body(request)
    }
}

/// Adapts a closure to `TimerFunction`.
public struct TimerFunctionClosure: TimerFunction {
    let body: @Sendable (TimerInfo, TimerContext) async throws -> Void

    public init(_ body: @escaping @Sendable (TimerInfo, TimerContext) async throws -> Void) {
        self.body = body
    }

    public func run(_ timer: TimerInfo, context: TimerContext) async throws {
        try await body(timer, context)
    }
}

/// The Swift side of the manifest: function name → handler.
///
/// Names compare case-insensitively, as Azure's do. Registering a name twice is
/// recorded and reported when the host validates the manifest against the registry.
public struct FunctionRegistry: Sendable {
    public enum Handler: Sendable {
        case http(any HTTPFunction)
        case timer(any TimerFunction)

        var kind: String {
            switch self {
            case .http: "HTTP"
            case .timer: "timer"
            }
        }
    }

    struct Entry: Sendable {
        var name: String
        var handler: Handler
    }

    private(set) var entries: [String: Entry] = [:]
    private(set) var duplicates: [String] = []

    public init() {}

    public mutating func register(_ name: String, http handler: some HTTPFunction) {
        add(name, .http(handler))
    }

    public mutating func register(
        _ name: String, http body: @escaping @Sendable (FunctionRequest) async throws -> FunctionResponse
    ) {
        add(name, .http(HTTPFunctionClosure(body)))
    }

    public mutating func register(_ name: String, timer handler: some TimerFunction) {
        add(name, .timer(handler))
    }

    public mutating func register(
        _ name: String, timer body: @escaping @Sendable (TimerInfo, TimerContext) async throws -> Void
    ) {
        add(name, .timer(TimerFunctionClosure(body)))
    }

    public var names: [String] { entries.values.map(\.name).sorted() }

    func handler(named name: String) -> Handler? {
        entries[name.lowercased()]?.handler
    }

    private mutating func add(_ name: String, _ handler: Handler) {
        let key = name.lowercased()
        if entries[key] != nil {
            duplicates.append(name)
        }
        entries[key] = Entry(name: name, handler: handler)
    }
}

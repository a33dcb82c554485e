import Foundation
import HTTPTypes
import NIOCore
import Synchronization

/// Who may read `/metrics`: anyone in development, else only a caller presenting `METRICS_TOKEN`.
public enum MetricsAccess: Sendable {
    case open
    case bearer(token: String)
    /// Outside development with no token configured: closed, never open by default.
    case closed
}

/// The host's lifecycle state, as `GET /admin/host/status` reports it.
public final class HostState: Sendable {
    public enum State: String, Sendable {
        case starting = "Starting"
        case running = "Running"
        case stopping = "Stopping"
    }

    private let state = Mutex(State.starting)
    let startedAt = ContinuousClock.now
    let instanceID = RequestIDs.generate()

    public init() {}

    public var current: State { state.withLock { $0 } }

    public func set(_ newState: State) {
        state.withLock { $0 = newState }
    }
}

/// Endpoints the runtime itself serves: `/metrics` in every mode, and in the emulator the
/// admin API of Azure Functions Core Tools (loopback only).
struct RuntimeEndpoints: Sendable {
    enum Endpoint {
        case metrics
        case openAPI
        case adminFunctions
        case adminFunction(String)
        case adminHostStatus
        case adminUnknown
    }

    struct Admin: Sendable {
        let scheduler: TimerScheduler
        let state: HostState
        let hostID: String
    }

    static let version = "1.0.0"

    let invoker: FunctionInvoker
    let metricsAccess: MetricsAccess
    let admin: Admin?
    /// The OpenAPI document, encoded once at start-up.
    let openAPI: [UInt8]

    func endpoint(for path: String) -> Endpoint? {
        if path == "/metrics" { return .metrics }
        if path == "/openapi.json" { return .openAPI }
        guard admin != nil, path.hasPrefix("/admin/") || path == "/admin" else { return nil }
        let segments = path.split(separator: "/")
        switch segments.count {
        case 2 where segments[1] == "functions": return .adminFunctions
        case 3 where segments[1] == "functions": return .adminFunction(QueryItems.decode(segments[2], plusAsSpace: false))
        case 3 where segments[1] == "host" && segments[2] == "status": return .adminHostStatus
        default: return .adminUnknown
        }
    }

    func respond(
        _ endpoint: Endpoint, method: HTTPRequest.Method, path: String, headers: HTTPFields, body: ByteBuffer,
        isFromLoopback: Bool, requestID: String
    ) async -> FunctionResponse {
        switch endpoint {
        case .metrics:
            guard method == .get || method == .head else {
                return .error(.methodNotAllowed(allowed: [.get]), requestID: requestID)
            }
            if let denied = authorizeMetrics(headers) { return .error(denied, requestID: requestID) }
            var responseHeaders = HTTPFields()
            responseHeaders[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return FunctionResponse(status: .ok, headers: responseHeaders, body: .bytes(ByteBuffer(bytes: invoker.metrics.exposition())))
        case .openAPI:
            guard method == .get || method == .head else {
                return .error(.methodNotAllowed(allowed: [.get]), requestID: requestID)
            }
            return .json(openAPI)
        case .adminFunctions, .adminFunction, .adminHostStatus, .adminUnknown:
            guard let admin else { return .error(.notFound(), requestID: requestID) }
            guard isFromLoopback else {
                return .error(.permissionDenied("the admin API answers loopback clients only"), requestID: requestID)
            }
            return await respondAdmin(endpoint, admin: admin, method: method, body: body, requestID: requestID)
        }
    }

    private func authorizeMetrics(_ headers: HTTPFields) -> FunctionError? {
        switch metricsAccess {
        case .open:
            return nil
        case .closed:
            return .unauthenticated("metrics require a bearer token and none is configured")
        case .bearer(let token):
            guard let header = headers[.authorization], header.hasPrefix("Bearer ") else {
                return .unauthenticated("metrics require a bearer token")
            }
            let presented = header.utf8.dropFirst(7)
            return ConstantTime.equals(presented, token.utf8) ? nil : .unauthenticated("invalid metrics token")
        }
    }

    private func respondAdmin(
        _ endpoint: Endpoint, admin: Admin, method: HTTPRequest.Method, body: ByteBuffer, requestID: String
    ) async -> FunctionResponse {
        switch endpoint {
        case .adminFunctions:
            guard method == .get else { return .error(.methodNotAllowed(allowed: [.get]), requestID: requestID) }
            return .json { writer in
                writer.beginArray()
                for function in invoker.catalog.functions {
                    writer.comma()
                    describe(function, admin: admin, into: &writer)
                }
                writer.endArray()
            }
        case .adminFunction(let name):
            guard let function = invoker.catalog.function(named: name) else {
                return .error(.notFound("no function named '\(name)'"), requestID: requestID)
            }
            switch method {
            case .get:
                return .json { writer in describe(function, admin: admin, into: &writer) }
            case .post:
                return invokeByHand(function, admin: admin, body: body, requestID: requestID)
            default:
                return .error(.methodNotAllowed(allowed: [.get, .post]), requestID: requestID)
            }
        case .adminHostStatus:
            guard method == .get else { return .error(.methodNotAllowed(allowed: [.get]), requestID: requestID) }
            let uptime = ContinuousClock.now - admin.state.startedAt
            return .json { writer in
                writer.beginObject()
                writer.field("id", admin.hostID)
                writer.field("state", admin.state.current.rawValue)
                writer.field("version", Self.version)
                writer.field("instanceId", admin.state.instanceID)
                writer.field("computerName", ProcessInfo.processInfo.hostName)
                writer.field("processUptime", Int(uptime.nanoseconds / 1_000_000))
                writer.field("functions", invoker.catalog.functions.count)
                writer.key("errors")
                writer.beginArray()
                writer.endArray()
                writer.endObject()
            }
        default:
            return .error(.notFound("no such admin endpoint"), requestID: requestID)
        }
    }

    /// `POST /admin/functions/{name}`: Core Tools' manual run of a non-HTTP function, answered 202 at once.
    /// The body is empty or a JSON object (`{"input": "..."}`); a timer ignores the input.
    private func invokeByHand(
        _ function: FunctionCatalog.Function, admin: Admin, body: ByteBuffer, requestID: String
    ) -> FunctionResponse {
        guard function.spec.timerTrigger != nil else {
            return .error(
                .validationFailed("'\(function.name)' is an HTTP function: call its route instead"), requestID: requestID)
        }
        if body.readableBytes > 0 {
            guard case .object? = try? JSONReader.parse(body.readableBytesView) else {
                return .error(.validationFailed("body must be a JSON object such as {\"input\": \"\"}"), requestID: requestID)
            }
        }
        guard admin.scheduler.invokeNow(function.name) else {
            return .error(.serviceUnavailable("the host is not accepting invocations"), requestID: requestID)
        }
        return FunctionResponse(status: .accepted)
    }

    private func describe(_ function: FunctionCatalog.Function, admin: Admin, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("name", function.name)
        writer.field("trigger", function.spec.trigger.bindingType)
        writer.field("isDisabled", function.spec.disabled)
        switch function.spec.trigger {
        case .http(let http):
            writer.key("methods")
            writer.beginArray()
            for method in http.methods ?? [] {
                writer.comma()
                writer.string(method.rawValue)
            }
            writer.endArray()
            writer.field("route", http.route.template)
            writer.field("authLevel", http.authLevel)
        case .timer(let timer):
            writer.field("schedule", timer.schedule.expression)
            writer.field("runOnStartup", timer.runOnStartup)
            writer.field("next", admin.scheduler.nextOccurrence(of: function).map { Timestamp.format(date: $0) })
        }
        writer.key("bindings")
        (function.spec.document["bindings"] ?? .array([])).write(to: &writer)
        writer.endObject()
    }
}

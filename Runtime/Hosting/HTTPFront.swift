import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

extension HTTPField.Name {
    // A valid token by construction; the initializer only fails on invalid header names.
    public static let requestID = HTTPField.Name("X-Request-Id")!
}

/// The request context the host needs from Hummingbird: just the channel, read only by the
/// loopback check of the admin endpoints, so a request costs no more than it must.
public struct HostRequestContext: InitializableFromSource, Sendable {
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        channel = source.channel
    }

    var isFromLoopback: Bool {
        switch channel.remoteAddress {
        case .v4(let address)?:
            return address.address.sin_addr.s_addr.bigEndian >> 24 == 127
        case .v6(let address)?:
            let bytes = withUnsafeBytes(of: address.address.sin6_addr) { Array($0) }
            let loopback: [UInt8] = Array(repeating: 0, count: 15) + [1]
            let mappedV4 = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
            return bytes == loopback || mappedV4
        case .unixDomainSocket?:
            return true
        case nil:
            return false
        }
    }
}

/// Turns HTTP requests into function invocations through one pipeline: the request id is taken
/// (or made) once, then each stage in order answers the request or passes it on — in `fnhost serve`
/// the Azure host's own calls, then the runtime endpoints (`/metrics`, `/openapi.json`, the
/// emulator's `/admin/...`), the module's internal endpoints, and the manifest's routes — and every
/// error a stage raises becomes the contract's error shape in one place. Every answer carries
/// `X-Request-Id`.
public struct HTTPFront: HTTPResponder {
    public typealias Context = HostRequestContext

    public static let maxBodySize = 1 << 20

    /// An invocation payload carries a base64 body of up to 1 MiB plus headers.
    static let maxPayloadSize = 4 << 20
    static let invocationIDHeader = HTTPField.Name("X-Azure-Functions-InvocationId")!

    /// The stages before the routes, in order.
    let stages: [any HostStage]
    let routes: FunctionRoutes

    init(
        invoker: FunctionInvoker, runtimeEndpoints: RuntimeEndpoints,
        internalEndpoints: [(prefix: String, handler: any HTTPFunction)] = [], mode: HostingMode, logger: Logger
    ) {
        let routes = FunctionRoutes(invoker: invoker, logger: logger)
        var stages: [any HostStage] = []
        if mode == .customHandler { stages.append(AzureHostCalls(invoker: invoker, routes: routes, logger: logger)) }
        stages.append(runtimeEndpoints)
        if !internalEndpoints.isEmpty { stages.append(InternalEndpoints(endpoints: internalEndpoints, logger: logger)) }
        self.stages = stages
        self.routes = routes
    }

    public func respond(to request: Request, context: HostRequestContext) async throws -> Response {
        let requestID = RequestIDs.taken(from: request.headers)
        let incoming = HostRequest(request: request, requestID: requestID, context: context)
        // The request's async calls run inline on the event loop, without a hop each (`EventLoopTaskExecutor`).
        var response = await withTaskExecutorPreference(EventLoopTaskExecutor.of(context.channel.eventLoop)) { await answer(incoming) }
        response.headers[.requestID] = requestID
        return response
    }

    private func answer(_ request: HostRequest) async -> Response {
        do {
            for stage in stages {
                if let response = try await stage.answer(request) { return response }
            }
            return try await routes.answer(request)
        } catch {
            return Self.response(.error(error, requestID: request.requestID))
        }
    }

    static func response(_ response: FunctionResponse) -> Response {
        switch response.body {
        case .bytes(let buffer):
            return Response(status: response.status, headers: response.headers, body: ResponseBody(byteBuffer: buffer))
        case .stream(let write):
            return Response(
                status: response.status, headers: response.headers,
                body: ResponseBody { writer in
                    var adapter: any FunctionBodyWriter = ResponseBodyWriterAdapter(inner: writer)
                    try await write(&adapter)
                    try await writer.finish(nil)
                })
        }
    }
}

/// One request as the pipeline's stages see it.
struct HostRequest: Sendable {
    var request: Request
    let requestID: String
    let context: HostRequestContext
    /// Taken once: every stage matches on it (`URI.path` builds a new string on each call).
    let path: String

    init(request: Request, requestID: String, context: HostRequestContext) {
        self.request = request
        self.requestID = requestID
        self.context = context
        path = request.uri.path
    }

    /// Asked only by the stages that need it (the admin endpoints).
    var isFromLoopback: Bool { context.isFromLoopback }

    var query: QueryItems { request.uri.query.map { QueryItems(parsing: Substring($0)) } ?? QueryItems() }

    /// The body, at most `limit` (1 MiB for HTTP triggers); a declared or actual larger body is 413
    /// without reading it all.
    func body(limit: Int = HTTPFront.maxBodySize, what: String = "request body") async throws(FunctionError) -> ByteBuffer {
        if let declared = request.headers[.contentLength], let length = Int(declared), length > limit {
            throw .payloadTooLarge(limit: limit, what: what)
        }
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw .payloadTooLarge(limit: limit, what: what)
        } catch {
            throw .validationFailed("the request body could not be read")
        }
    }
}

/// A stage of the host's request pipeline before the routes: the answer, or nil to pass the request on. A thrown
/// error is answered in the contract's shape by the pipeline.
protocol HostStage: Sendable {
    func answer(_ request: HostRequest) async throws(FunctionError) -> Response?
}

extension RuntimeEndpoints: HostStage {
    func answer(_ request: HostRequest) async throws(FunctionError) -> Response? {
        guard let endpoint = endpoint(for: request.path) else { return nil }
        let body = try await request.body()
        return HTTPFront.response(await respond(
            endpoint, method: request.request.method, path: request.path, headers: request.request.headers, body: body,
            isFromLoopback: request.isFromLoopback, requestID: request.requestID))
    }
}

/// The module's internal endpoints (webhooks and the like), by path prefix.
struct InternalEndpoints: HostStage {
    let endpoints: [(prefix: String, handler: any HTTPFunction)]
    let logger: Logger

    func answer(_ request: HostRequest) async throws(FunctionError) -> Response? {
        let path = request.path
        guard let endpoint = endpoints.first(where: { path.hasPrefix($0.prefix) }) else { return nil }
        let body = try await request.body()
        let internalRequest = FunctionRequest(
            functionName: endpoint.prefix, method: request.request.method, path: path, query: request.query,
            headers: request.request.headers, body: body, requestID: request.requestID, logger: logger)
        do {
            return HTTPFront.response(try await endpoint.handler.handle(internalRequest))
        } catch let error as FunctionError {
            throw error
        } catch {
            throw .internalError
        }
    }
}

/// The manifest's HTTP routes: the last stage, answering everything left (404 and 405 included).
struct FunctionRoutes: Sendable {
    let invoker: FunctionInvoker
    let logger: Logger

    func answer(_ request: HostRequest) async throws(FunctionError) -> Response {
        let path = request.path
        switch invoker.catalog.router.resolve(method: request.request.method, path: Substring(path)) {
        case .notFound:
            invoker.metrics.unrouted(status: 404)
            throw .notFound("no function is routed at \(path)")
        case .methodNotAllowed(let allowed):
            invoker.metrics.unrouted(status: 405)
            throw .methodNotAllowed(allowed: allowed)
        case .matched(let index, let parameters):
            let function = invoker.catalog.functions[index]
            let body: ByteBuffer
            do {
                body = try await request.body()
            } catch {
                invoker.metrics.unrouted(status: Int(error.status.code))
                throw error
            }
            let functionRequest = FunctionRequest(
                functionName: function.name, method: request.request.method, path: path, pathParameters: parameters,
                query: request.query, headers: request.request.headers, body: body, requestID: request.requestID, logger: logger)
            return HTTPFront.response(await invoker.invokeHTTP(function, request: functionRequest))
        }
    }
}

/// In `fnhost serve`: the Azure host's readiness probe (`GET /`) and invocation payloads
/// (`POST /{FunctionName}`). Anything else (forwarded HTTP requests) passes on to the routes.
struct AzureHostCalls: HostStage {
    let invoker: FunctionInvoker
    let routes: FunctionRoutes
    let logger: Logger

    func answer(_ request: HostRequest) async throws(FunctionError) -> Response? {
        let path = request.path
        let method = request.request.method
        if path == "/", method == .get || method == .head {
            return HTTPFront.response(.json(Array(#"{"status":"ready"}"#.utf8)))
        }
        let segments = path.split(separator: "/")
        guard method == .post, segments.count == 1,
            let function = invoker.catalog.function(named: QueryItems.decode(segments[0], plusAsSpace: false))
        else { return nil }
        let body = try await request.body(limit: HTTPFront.maxPayloadSize, what: "the invocation payload")
        let data: [String: JSONValue]
        do {
            data = try AzureInvocation.parsePayload(body)
        } catch {
            // A function route that accepts POST at this path gets the forwarded request instead.
            if case .matched = invoker.catalog.router.resolve(method: .post, path: Substring(path)) {
                var forwarded = request
                forwarded.request.body = RequestBody(buffer: body)
                return try await routes.answer(forwarded)
            }
            throw .validationFailed(error.message)
        }
        let invocationID = request.request.headers[HTTPFront.invocationIDHeader]
        switch function.spec.trigger {
        case .timer(let timer):
            let info = AzureInvocation.timerInfo(data[timer.bindingName])
            let succeeded = await invoker.invokeTimer(function, timer: info, reason: "Timer fired by the Azure Functions host")
            guard succeeded else { throw .internalError }
            return HTTPFront.response(.json(AzureInvocation.emptyEnvelope))
        case .http(let trigger):
            let parts: FunctionRequest.Parts
            let tooLarge: Bool
            do {
                (parts, tooLarge) = try AzureInvocation.httpRequest(
                    data[trigger.bindingName], function: function, trigger: trigger, invocationID: invocationID)
            } catch {
                throw .validationFailed(error.message)
            }
            // The forwarded request must be one the function's binding accepts, as on the Azure host.
            if let allowed = trigger.methods, !allowed.contains(parts.method) {
                return HTTPFront.response(.error(.methodNotAllowed(allowed: allowed), requestID: parts.requestID))
            }
            var response = tooLarge
                ? FunctionResponse.error(.payloadTooLarge, requestID: parts.requestID)
                : await invoker.invokeHTTP(function, request: FunctionRequest(parts, functionName: function.name, logger: logger))
            response.headers[.requestID] = parts.requestID
            let responseBody: ByteBuffer
            switch response.body {
            case .bytes(let buffer):
                responseBody = buffer
            case .stream(let write):
                var collector: any FunctionBodyWriter = CollectingBodyWriter()
                do {
                    try await write(&collector)
                } catch {
                    throw .internalError
                }
                responseBody = (collector as? CollectingBodyWriter)?.buffer ?? ByteBuffer()
            }
            return HTTPFront.response(
                .json(AzureInvocation.httpEnvelope(
                    status: response.status, headers: response.headers, body: responseBody, outputName: trigger.outputName)))
        }
    }
}

/// Gathers a streamed body for a custom-handler envelope, which carries the body whole.
private struct CollectingBodyWriter: FunctionBodyWriter {
    var buffer = ByteBuffer()

    mutating func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        self.buffer.writeBuffer(&buffer)
    }
}

private struct ResponseBodyWriterAdapter: FunctionBodyWriter {
    var inner: any ResponseBodyWriter

    mutating func write(_ buffer: ByteBuffer) async throws {
        try await inner.write(buffer)
    }
}

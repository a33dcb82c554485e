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

/// Turns HTTP requests into function invocations: runtime endpoints first (`/metrics`,
/// the emulator's `/admin/...`), then the manifest's routes. Every answer carries
/// `X-Request-Id`; every error the runtime raises has the contract's shape.
public struct HTTPFront: HTTPResponder {
    public typealias Context = HostRequestContext

    public static let maxBodySize = 1 << 20

    /// An invocation payload carries a base64 body of up to 1 MiB plus headers.
    static let maxPayloadSize = 4 << 20
    static let invocationIDHeader = HTTPField.Name("X-Azure-Functions-InvocationId")!

    let invoker: FunctionInvoker
    let runtimeEndpoints: RuntimeEndpoints
    let internalEndpoints: [(prefix: String, handler: any HTTPFunction)]
    let mode: HostingMode
    let logger: Logger

    init(
        invoker: FunctionInvoker, runtimeEndpoints: RuntimeEndpoints,
        internalEndpoints: [(prefix: String, handler: any HTTPFunction)] = [], mode: HostingMode, logger: Logger
    ) {
        self.invoker = invoker
        self.runtimeEndpoints = runtimeEndpoints
        self.internalEndpoints = internalEndpoints
        self.mode = mode
        self.logger = logger
    }

    public func respond(to request: Request, context: HostRequestContext) async throws -> Response {
        let requestID = request.headers[.requestID].flatMap { RequestIDs.isSane($0) ? $0 : nil } ?? RequestIDs.generate()
        var response = await answer(request, context: context, requestID: requestID)
        response.headers[.requestID] = requestID
        return response
    }

    private func answer(_ request: Request, context: HostRequestContext, requestID: String) async -> Response {
        let uri = request.uri
        let path = uri.path
        if mode == .customHandler, let response = await answerAzureHost(request, path: path, requestID: requestID) {
            return response
        }
        if let endpoint = runtimeEndpoints.endpoint(for: path) {
            let body: ByteBuffer
            switch await collectBody(request) {
            case .success(let collected): body = collected
            case .failure(let error): return Self.response(.error(error, requestID: requestID))
            }
            let functionResponse = await runtimeEndpoints.respond(
                endpoint, method: request.method, path: path, headers: request.headers, body: body,
                isFromLoopback: context.isFromLoopback, requestID: requestID)
            return Self.response(functionResponse)
        }
        for endpoint in internalEndpoints where path.hasPrefix(endpoint.prefix) {
            let body: ByteBuffer
            switch await collectBody(request) {
            case .success(let collected): body = collected
            case .failure(let error): return Self.response(.error(error, requestID: requestID))
            }
            let internalRequest = FunctionRequest(
                functionName: endpoint.prefix, method: request.method, path: path,
                query: uri.query.map { QueryItems(parsing: Substring($0)) } ?? QueryItems(), headers: request.headers,
                body: body, requestID: requestID, logger: logger)
            do {
                return Self.response(try await endpoint.handler.handle(internalRequest))
            } catch let error as FunctionError {
                return Self.response(.error(error, requestID: requestID))
            } catch {
                return Self.response(.error(.internalError, requestID: requestID))
            }
        }
        return await routed(request, path: path, requestID: requestID)
    }

    private func routed(_ request: Request, path: String, requestID: String) async -> Response {
        let uri = request.uri
        switch invoker.catalog.router.resolve(method: request.method, path: Substring(path)) {
        case .notFound:
            invoker.metrics.unrouted(status: 404)
            return Self.response(.error(.notFound("no function is routed at \(path)"), requestID: requestID))
        case .methodNotAllowed(let allowed):
            invoker.metrics.unrouted(status: 405)
            return Self.response(.error(.methodNotAllowed(allowed: allowed), requestID: requestID))
        case .matched(let index, let parameters):
            let function = invoker.catalog.functions[index]
            let body: ByteBuffer
            switch await collectBody(request) {
            case .success(let collected): body = collected
            case .failure(let error):
                invoker.metrics.unrouted(status: Int(error.status.code))
                return Self.response(.error(error, requestID: requestID))
            }
            let functionRequest = FunctionRequest(
                functionName: function.name, method: request.method, path: path, pathParameters: parameters,
                query: uri.query.map { QueryItems(parsing: Substring($0)) } ?? QueryItems(),
                headers: request.headers, body: body, requestID: requestID, logger: logger)
            return Self.response(await invoker.invokeHTTP(function, request: functionRequest))
        }
    }

    /// In `fnhost serve`: the Azure host's readiness probe (`GET /`) and invocation payloads
    /// (`POST /{FunctionName}`). Anything else (forwarded HTTP requests) returns nil and is routed as usual.
    private func answerAzureHost(_ request: Request, path: String, requestID: String) async -> Response? {
        if path == "/", request.method == .get || request.method == .head {
            return Self.response(.json(Array(#"{"status":"ready"}"#.utf8)))
        }
        let segments = path.split(separator: "/")
        guard request.method == .post, segments.count == 1,
            let function = invoker.catalog.function(named: QueryItems.decode(segments[0], plusAsSpace: false))
        else { return nil }
        let body: ByteBuffer
        switch await collectBody(request, limit: Self.maxPayloadSize, what: "the invocation payload") {
        case .success(let collected): body = collected
        case .failure(let error): return Self.response(.error(error, requestID: requestID))
        }
        let data: [String: JSONValue]
        do {
            data = try AzureInvocation.parsePayload(body)
        } catch {
            // A function route that accepts POST at this path gets the forwarded request instead.
            if case .matched = invoker.catalog.router.resolve(method: .post, path: Substring(path)) {
                var forwarded = request
                forwarded.body = RequestBody(buffer: body)
                return await routed(forwarded, path: path, requestID: requestID)
            }
            return Self.response(.error(.validationFailed(error.message), requestID: requestID))
        }
        let invocationID = request.headers[Self.invocationIDHeader]
        switch function.spec.trigger {
        case .timer(let timer):
            let info = AzureInvocation.timerInfo(data[timer.bindingName])
            let succeeded = await invoker.invokeTimer(function, timer: info, reason: "Timer fired by the Azure Functions host")
            guard succeeded else {
                return Self.response(.error(.internalError, requestID: requestID))
            }
            return Self.response(.json(AzureInvocation.emptyEnvelope))
        case .http(let trigger):
            let parts: FunctionRequest.Parts
            let tooLarge: Bool
            do {
                (parts, tooLarge) = try AzureInvocation.httpRequest(
                    data[trigger.bindingName], function: function, trigger: trigger, invocationID: invocationID)
            } catch {
                return Self.response(.error(.validationFailed(error.message), requestID: requestID))
            }
            // The forwarded request must be one the function's binding accepts, as on the Azure host.
            if let allowed = trigger.methods, !allowed.contains(parts.method) {
                return Self.response(.error(.methodNotAllowed(allowed: allowed), requestID: parts.requestID))
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
                    return Self.response(.error(.internalError, requestID: requestID))
                }
                responseBody = (collector as? CollectingBodyWriter)?.buffer ?? ByteBuffer()
            }
            return Self.response(
                .json(AzureInvocation.httpEnvelope(
                    status: response.status, headers: response.headers, body: responseBody, outputName: trigger.outputName)))
        }
    }

    /// The body, at most `limit` (1 MiB for HTTP triggers); a declared or actual larger body is 413 without reading it all.
    private func collectBody(
        _ request: Request, limit: Int = maxBodySize, what: String = "request body"
    ) async -> Result<ByteBuffer, FunctionError> {
        if let declared = request.headers[.contentLength], let length = Int(declared), length > limit {
            return .failure(.payloadTooLarge(limit: limit, what: what))
        }
        do {
            return .success(try await request.body.collect(upTo: limit))
        } catch is NIOTooManyBytesError {
            return .failure(.payloadTooLarge(limit: limit, what: what))
        } catch {
            return .failure(.validationFailed("the request body could not be read"))
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

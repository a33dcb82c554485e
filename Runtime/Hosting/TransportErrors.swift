import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Answers requests the HTTP parser refused in the contract's error shape (docs/api.md) instead of a
/// bare 400: oversized headers are 431, anything else malformed (conflicting `Content-Length`,
/// `Transfer-Encoding` with `Content-Length`, bare LF, an invalid method or URL …) is 400; each
/// with the JSON error body, `X-Request-Id` and `Connection: close`, then the connection closes.
/// Sits right after the HTTP codec; other errors pass through unchanged.
final class TransportErrorResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    /// Longer request targets are 414 (the parser's header limit is far larger).
    static let maxTargetLength = 8 * 1024

    private var answered = false

    /// Puts the HTTP/1.0 keep-alive rule in front of the codec (it needs the request's version,
    /// which the HTTPTypes parts no longer carry).
    func handlerAdded(context: ChannelHandlerContext) {
        if let codec = try? context.pipeline.syncOperations.handler(type: HTTP1ToHTTPServerCodec.self) {
            try? context.pipeline.syncOperations.addHandler(HTTP10KeepAlive(), position: .before(codec))
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }  // the connection is closing; nothing more reaches the app
        if case .head(let head) = unwrapInboundIn(data) {
            if (head.path?.utf8.count ?? 0) > Self.maxTargetLength {
                refuse(context: context, status: .uriTooLong, code: "URI_TOO_LONG", message: "the request target exceeds \(Self.maxTargetLength) bytes")
                return
            }
            // No tunnels here; answered with a framed body, then the connection closes.
            if head.method == .connect {
                refuse(context: context, status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED", message: "CONNECT is not supported")
                return
            }
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        let (status, code, message) = Self.answer(parserError)
        refuse(context: context, status: status, code: code, message: message)
    }

    private func refuse(context: ChannelHandlerContext, status: HTTPResponse.Status, code: String, message: String) {
        answered = true
        let requestID = RequestIDs.generate()
        let body = FunctionError(status: status, code: code, message: message).body(requestID: requestID)
        var fields = HTTPFields()
        fields[.contentType] = "application/json; charset=utf-8"
        fields[.contentLength] = String(body.count)
        fields[.connection] = "close"
        fields[.requestID] = requestID
        context.write(wrapOutboundOut(.head(HTTPResponse(status: status, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(context.channel.allocator.buffer(bytes: body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    static func answer(_ error: HTTPParserError) -> (HTTPResponse.Status, String, String) {
        switch error {
        case .headerOverflow:
            (.init(code: 431, reasonPhrase: "Request Header Fields Too Large"), "HEADERS_TOO_LARGE", "request headers are too large")
        default:
            (.badRequest, "VALIDATION_FAILED", "the request is not valid HTTP/1.1 (\(error))")
        }
    }
}

/// HTTP/1.0 semantics the HTTPTypes pipeline loses: a 1.0 request without `Connection: keep-alive`
/// gets `Connection: close` on its response, and the connection closes after it (RFC 9112 §9.3).
final class HTTP10KeepAlive: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// One entry per request head seen, in order (pipelined requests are answered in order).
    private var closeAfter: [Bool] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            let keepAlive = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "keep-alive" }
            closeAfter.append(head.version.major == 1 && head.version.minor == 0 && !keepAlive)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where closeAfter.first == true:
            head.headers.replaceOrAdd(name: "connection", value: "close")
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end(let trailers):
            let close = closeAfter.isEmpty ? false : closeAfter.removeFirst()
            if close {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(trailers))).whenComplete { _ in channel.close(promise: nil) }
                promise?.succeed(())
            } else {
                context.write(wrapOutboundOut(.end(trailers)), promise: promise)
            }
        default:
            context.write(data, promise: promise)
        }
    }
}

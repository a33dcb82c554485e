import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One outbound HTTP call with a hard deadline over the whole exchange (AHC's own timeout
/// stops at the response head) and a cap on the body read.
public struct OutboundHTTP: Sendable {
    public struct Reply: Sendable {
        public let status: Int
        public let headers: HTTPHeaders
        public let body: ByteBuffer
    }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        case timedOut
        case unreachable(String)
        case bodyTooLarge

        public var description: String {
            switch self {
            case .timedOut: "timed out"
            case .unreachable(let reason): "unreachable (\(reason))"
            case .bodyTooLarge: "answer too large"
            }
        }
    }

    let client: HTTPClient

    /// The client every outbound call shares. A refused connection fails at once instead of being
    /// retried with backoff until the deadline (AHC's default): nothing is listening, and holding each
    /// request for the whole deadline while a host is down only turns its outage into ours. Redirects
    /// are answers, never followed (a host call carries an API key).
    public static let sharedClient: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            certificateVerification: .fullVerification, redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(2), read: .seconds(30)), decompression: .disabled)
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    public init(client: HTTPClient = OutboundHTTP.sharedClient) {
        self.client = client
    }

    public func send(_ request: HTTPClientRequest, timeout: Duration, maxBody: Int = 1 << 20) async throws(Failure) -> Reply {
        let client = client
        var traced = request
        // The call is a span of the invocation's trace (docs/observability.md), exported when spans are.
        var span = Tracing.start(
            "HTTP \(request.method.rawValue)", attributes: [("http.request.method", .string(request.method.rawValue)), ("server.address", .string(URL(string: request.url)?.host ?? ""))])
        if let context = span?.context ?? TraceContext.current?.child() {
            traced.headers.replaceOrAdd(name: TraceContext.header, value: context.traceparent)
        }
        let request = traced
        let reply: Reply
        do {
            reply = try await exchange(request, client: client, timeout: timeout, maxBody: maxBody)
        } catch {
            span?.end(failed: true)
            throw error
        }
        span?.set("http.response.status_code", .int(Int64(reply.status)))
        span?.end(failed: reply.status >= 500)
        return reply
    }

    private func exchange(_ request: HTTPClientRequest, client: HTTPClient, timeout: Duration, maxBody: Int) async throws(Failure) -> Reply {
        do {
            return try await withThrowingTaskGroup(of: Reply?.self) { group in
                group.addTask {
                    let response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
                    let body = try await response.body.collect(upTo: maxBody)
                    return Reply(status: Int(response.status.code), headers: response.headers, body: body)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let reply = first else { throw Failure.timedOut }
                return reply
            }
        } catch let failure as Failure {
            throw failure
        } catch is NIOTooManyBytesError {
            throw .bodyTooLarge
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            throw .timedOut
        } catch {
            throw .unreachable(String(describing: type(of: error)))
        }
    }

    /// Plain `http` only to loopback (local stand-ins, the App Service identity endpoint); https elsewhere.
    public static func isAllowedTarget(_ url: URL) -> Bool {
        switch url.scheme?.lowercased() {
        case "https": return url.host != nil
        case "http":
            guard let host = url.host?.lowercased() else { return false }
            return host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
        default: return false
        }
    }
}

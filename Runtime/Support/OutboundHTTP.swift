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
    /// are answers, never followed (a host call or a span export carries an API key).
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
        case "http": return url.host.map(isLoopback) ?? false
        default: return false
        }
    }

    /// `localhost`, `::1` or a dotted quad in 127.0.0.0/8, on bytes with ASCII-only case folding. A name
    /// that merely starts like one (`127.0.0.1.example.net`) is not loopback: it resolves anywhere.
    static func isLoopback(_ host: String) -> Bool {
        let bytes = host.utf8.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
        if bytes.elementsEqual("localhost".utf8) || bytes.elementsEqual("::1".utf8) || bytes.elementsEqual("[::1]".utf8) { return true }
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        let octets = parts.map { part -> Int? in
            guard (1...3).contains(part.count), part.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            return part.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        }
        return octets[0] == 127 && octets.allSatisfy { ($0 ?? 256) <= 255 }
    }
}

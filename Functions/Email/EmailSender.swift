import AsyncHTTPClient
import Foundation
import FunctionRuntime
import NIOCore

/// What the module asks the host to send (docs/operations.md).
struct EmailRequest: Sendable, Equatable {
    var tenantID: TenantID
    var template: String
    var to: String
    /// JSON text of an object.
    var vars: String
    var idempotencyKey: String

    /// `{"tenant_id","template","to","vars","idempotency_key"}`.
    var body: [UInt8] {
        var writer = JSONWriter(capacity: 256 + vars.utf8.count)
        writer.beginObject()
        writer.field("tenant_id", tenantID.text)
        writer.field("template", template)
        writer.field("to", to)
        writer.key("vars")
        writer.raw(vars)
        writer.field("idempotency_key", idempotencyKey)
        writer.endObject()
        return writer.bytes
    }
}

enum EmailSendError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Try again later (no earlier than `retryAfter` seconds when the host said so).
    case retryable(String, retryAfter: Double?)
    /// The host refused the request itself; retrying cannot help.
    case permanent(String)

    var description: String {
        switch self {
        case .retryable(let reason, _): reason
        case .permanent(let reason): reason
        }
    }
}

/// The host's email API, or the development host's stand-in.
protocol EmailSender: Sendable {
    /// The host's `message_id` once it accepted the request.
    func send(_ request: EmailRequest) async throws(EmailSendError) -> String
}

/// `POST {HOST_EMAIL_API}/email/send` with `Authorization: Bearer HOST_EMAIL_API_KEY`.
/// 2xx with a `message_id` is success; 408, 409 (in flight), 425, 429 and 5xx (and no answer)
/// are retried, honouring `Retry-After`; any other 4xx is permanent.
struct HostEmailClient: EmailSender {
    let baseURL: String
    let apiKey: String?
    let http: OutboundHTTP
    let timeout: Duration

    init(baseURL: String, apiKey: String?, http: OutboundHTTP = OutboundHTTP(), timeout: Duration = .seconds(5)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.http = http
        self.timeout = timeout
    }

    func send(_ request: EmailRequest) async throws(EmailSendError) -> String {
        var outbound = HTTPClientRequest(url: baseURL + "/email/send")
        outbound.method = .POST
        if let apiKey { outbound.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        outbound.headers.add(name: "Content-Type", value: "application/json")
        outbound.headers.add(name: "Idempotency-Key", value: request.idempotencyKey)
        outbound.body = .bytes(ByteBuffer(bytes: request.body))
        let reply: OutboundHTTP.Reply
        do {
            reply = try await http.send(outbound, timeout: timeout, maxBody: 64 * 1024)
        } catch {
            throw .retryable("email host \(error.description)", retryAfter: nil)
        }
        switch reply.status {
        case 200..<300:
            guard let answer = try? JSONReader.parse(reply.body.readableBytesView),
                let messageID = answer["message_id"]?.stringValue, !messageID.isEmpty, messageID.utf8.count <= 256
            else { throw .retryable("email host answered without a message_id", retryAfter: nil) }
            return messageID
        case 408, 409, 425, 429, 500..<600:
            throw .retryable("email host answered \(reply.status)", retryAfter: Self.retryAfter(reply.headers.first(name: "Retry-After")))
        default:
            throw .permanent("email host refused the request (\(reply.status))")
        }
    }
}

extension HostEmailClient {
    /// `Retry-After` as delta seconds or an HTTP date (anything else is ignored), at most a day.
    static func retryAfter(_ value: String?) -> Double? {
        Bounded.retryAfterSeconds(value).map(Double.init)
    }
}

/// The development host's email endpoint, in process: the same key always yields the same
/// message id (as the real host promises); `fnhost dev-host email-fail` makes it fail, and every
/// accepted send is appended to `.fnhost/dev-host/sent-emails.jsonl` (a local mail catcher).
struct DevHostEmail: EmailSender {
    let store: DevHostStore

    func send(_ request: EmailRequest) async throws(EmailSendError) -> String {
        guard store.directory().emailFailing != true else {
            throw .retryable("development host email is switched to fail", retryAfter: nil)
        }
        let messageID = DevHostStore.messageID(tenant: request.tenantID.text, idempotencyKey: request.idempotencyKey)
        store.recordSentEmail(request, messageID: messageID)
        return messageID
    }
}

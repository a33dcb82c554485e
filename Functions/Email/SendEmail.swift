import CoreMetrics
import Crypto
import Foundation
import FunctionRuntime
import HTTPTypes
import Logging

/// Sends outbox rows to the host and records the outcome: sent (with `EMAIL_SEND_REQUESTED` and
/// the host's `message_id` audited in the same transaction), retried later with backoff, or dead.
struct OutboxSender: Sendable {
    let store: any ModuleStore
    let sender: any EmailSender
    let retry: RetryPolicy
    let logger: Logger
    let sent: CoreMetrics.Counter
    let retried: CoreMetrics.Counter
    let dead: CoreMetrics.Counter

    init(store: any ModuleStore, sender: any EmailSender, retry: RetryPolicy, logger: Logger, metrics: any MetricsFactory) {
        self.store = store
        self.sender = sender
        self.retry = retry
        self.logger = logger
        sent = CoreMetrics.Counter(label: "fnhost_email_sent_total", factory: metrics)
        retried = CoreMetrics.Counter(label: "fnhost_email_retries_total", factory: metrics)
        dead = CoreMetrics.Counter(label: "fnhost_email_dead_total", factory: metrics)
    }

    enum Outcome: Sendable, Equatable {
        case sent(messageID: String)
        case queued
        case dead
    }

    /// One attempt for a row `owner` has leased.
    func attempt(_ email: OutboxEmail, owner: String) async throws(StoreUnavailable) -> Outcome {
        let attempts = email.attempts + 1
        let result: Result<String, EmailSendError>
        do throws(EmailSendError) {
            result = .success(try await sender.send(email.request))
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let messageID):
            let audit = AuditRecord(
                tenantID: email.tenantID, actorSub: nil, actorEmail: nil, eventType: "EMAIL_SEND_REQUESTED", severity: .info,
                details: [
                    "message_id": .string(messageID), "idempotency_key": .string(email.idempotencyKey), "template": .string(email.template),
                    "outbox_id": .string(email.id), "attempts": .number(Double(attempts)),
                ])
            _ = try await store.markSent(email, owner: owner, messageID: messageID, audit: audit)
            sent.increment()
            return .sent(messageID: messageID)
        case .failure(.permanent(let reason)):
            try await giveUp(email, owner: owner, attempts: attempts, reason: reason)
            return .dead
        case .failure(.retryable(let reason, let retryAfter)):
            let delay = retry.delay(afterAttempts: attempts, retryAfter: retryAfter)
            let now = Timestamps.nowMicroseconds()
            let age = Double(now - (Timestamps.microseconds(email.createdAt) ?? now)) / 1_000_000
            guard age + delay <= retry.horizon else {
                try await giveUp(email, owner: owner, attempts: attempts, reason: reason + "; retry horizon reached")
                return .dead
            }
            try await store.markRetry(
                email, owner: owner, attempts: attempts, nextAttemptAt: Timestamps.string(microseconds: now + Int64(delay * 1_000_000)),
                error: reason)
            retried.increment()
            logger.info(
                "email queued for retry",
                metadata: [
                    "outbox_id": .string(email.id), "attempts": .stringConvertible(attempts), "delay_s": .stringConvertible(delay),
                    "reason": .string(reason),
                ])
            return .queued
        }
    }

    private func giveUp(_ email: OutboxEmail, owner: String, attempts: Int, reason: String) async throws(StoreUnavailable) {
        try await store.markDead(email, owner: owner, attempts: attempts, error: reason)
        dead.increment()
        logger.error(
            "email dead: not delivered",
            metadata: ["tenant_id": .string(email.tenantID.text), "outbox_id": .string(email.id), "attempts": .stringConvertible(attempts), "reason": .string(reason)])
    }
}

/// `POST /api/emails` (`EMAIL_SEND`) — `{"template","to","vars"}` with an optional `Idempotency-Key`:
/// the request becomes an `email_outbox` row, then the host is tried at once. 202 `sent` with the
/// host's `message_id`, or 202 `queued` (the dispatcher delivers it later). The same key from the
/// same tenant answers the first request's outcome without calling the host again; with a
/// different body it is 422 `IDEMPOTENCY_KEY_REUSED`.
struct SendEmail: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.emailSend)
    static let idempotencyKeyHeader = HTTPField.Name("Idempotency-Key")!
    static let templatePattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
    static let lease: Int64 = 30_000_000

    /// `templatePattern` checked on bytes (a regular expression's `$` would admit a final newline).
    static func isTemplateName(_ text: String) -> Bool {
        let bytes = text.utf8
        func alnum(_ byte: UInt8) -> Bool {
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
        }
        guard (1...100).contains(bytes.count), let first = bytes.first, alnum(first) else { return false }
        return bytes.allSatisfy { alnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    let store: any ModuleStore
    let outbox: OutboxSender

    struct Input: Sendable {
        var template: String
        var to: String
        var vars: JSONValue
    }

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let input = try Self.parse(try LeadRequests.jsonBody(request))
        let key: String
        if let header = request.headers[Self.idempotencyKeyHeader] {
            guard IdempotencyKeys.isValidHeader(header) else {
                throw FunctionError.validationFailed("header 'Idempotency-Key' must be 1 to 255 visible ASCII characters")
            }
            key = IdempotencyKeys.derived(tenant: principal.tenantID, header: header)
        } else {
            key = IdempotencyKeys.generated()
        }
        var vars = JSONWriter()
        input.vars.write(to: &vars)
        var fingerprint = JSONWriter()
        JSONValue.object(["template": .string(input.template), "to": .string(input.to), "vars": input.vars]).write(to: &fingerprint)
        let now = Timestamps.nowMicroseconds()
        let email = OutboxEmail(
            tenantID: principal.tenantID, id: RequestIDs.generate(), idempotencyKey: key,
            requestHash: Hex.encode(SHA256.hash(data: fingerprint.bytes)), template: input.template, to: input.to,
            vars: String(decoding: vars.bytes, as: UTF8.self), createdAt: Timestamps.string(microseconds: now))
        let owner = "request:" + request.requestID
        do {
            switch try await store.enqueue(email, owner: owner, leaseUntil: Timestamps.string(microseconds: now + Self.lease)) {
            case .existing(let earlier):
                guard earlier.requestHash.utf8.elementsEqual(email.requestHash.utf8) else {
                    throw FunctionError(
                        status: .unprocessableContent, code: "IDEMPOTENCY_KEY_REUSED",
                        message: "this Idempotency-Key was used before with a different request")
                }
                return Self.answer(earlier.status == .sent ? "sent" : "queued", messageID: earlier.messageID, key: key)
            case .inserted(let row):
                switch try await outbox.attempt(row, owner: owner) {
                case .sent(let messageID): return Self.answer("sent", messageID: messageID, key: key)
                case .queued, .dead: return Self.answer("queued", messageID: nil, key: key)
                }
            }
        } catch let error as StoreUnavailable {
            throw error.functionError
        }
    }

    static func answer(_ status: String, messageID: String?, key: String) -> FunctionResponse {
        .json(status: .accepted) { writer in
            writer.beginObject()
            writer.field("status", status)
            writer.field("message_id", messageID)
            writer.field("idempotency_key", key)
            writer.endObject()
        }
    }

    static func parse(_ body: [UInt8]) throws(FunctionError) -> Input {
        let object = try FunctionError.jsonObject(body, "body must be a JSON object {\"template\", \"to\", \"vars\"}")
        for field in object.keys where !["template", "to", "vars"].contains(field) {
            throw .validationFailed("field '\(field)' is not allowed")
        }
        guard case .string(let template)? = object["template"], isTemplateName(template) else {
            throw .validationFailed("field 'template' must be a template name (letters, digits, _ . -; at most 100)")
        }
        guard case .string(let to)? = object["to"], to.utf8.count <= 254, LeadFields.isEmail(to) else {
            throw .validationFailed("field 'to' must be an email address")
        }
        let vars = object["vars"] ?? .object([:])
        guard case .object = vars else { throw .validationFailed("field 'vars' must be an object") }
        return Input(template: template, to: to, vars: vars)
    }
}

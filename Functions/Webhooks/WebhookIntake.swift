import CoreMetrics
import Foundation
import FunctionRuntime
import HTTPTypes

/// What every host webhook does before its own work (docs/operations.md, §9b): verify the Standard Webhooks
/// signature over the raw body with any configured `WEBHOOK_HMAC_SECRET`, count and log a
/// rejection (401 `INVALID_SIGNATURE`, nothing changes), check that the body names this endpoint's event in `type`
/// (a delivery signed for another endpoint is a 400, never acted on), and claim the `webhook-id` in the shared
/// cache so a delivery repeated within 10 minutes — to this endpoint or any other — is answered 204 without a
/// second effect.
struct WebhookIntake: Sendable {
    static let webhookID = HTTPField.Name("webhook-id")!
    static let webhookTimestamp = HTTPField.Name("webhook-timestamp")!
    static let webhookSignature = HTTPField.Name("webhook-signature")!
    static let replayWindow: Duration = .seconds(600)

    /// One replay namespace for every webhook endpoint: a `webhook-id` is acted on once, wherever it is sent.
    static let namespace = "webhook-seen"

    let secrets: Secrets
    let cache: any KeyValueCache
    /// The event this endpoint acts on (`rbac.changed`, `sessions.revoked`): the body's `type` must be exactly it.
    let eventType: String
    let rejections: [WebhookSignature.Rejection: CoreMetrics.Counter]
    let now: @Sendable () -> Int64

    init(
        secrets: Secrets, cache: any KeyValueCache, eventType: String, metrics: any MetricsFactory,
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.secrets = secrets
        self.cache = cache
        self.eventType = eventType
        self.now = now
        var rejections: [WebhookSignature.Rejection: CoreMetrics.Counter] = [:]
        for reason in [WebhookSignature.Rejection.missingHeader, .badTimestamp, .stale, .noSecret, .mismatch] {
            rejections[reason] = CoreMetrics.Counter(
                label: "fnhost_webhook_rejections_total", dimensions: [("reason", reason.rawValue)], factory: metrics)
        }
        self.rejections = rejections
    }

    /// The verified delivery: its id and raw body.
    func authenticate(_ request: FunctionRequest) async throws(FunctionError) -> (id: String, body: [UInt8]) {
        let configured: String?
        do {
            configured = try await secrets.secret(named: ModuleSettingSpecs.webhookSecret.name)
        } catch {
            throw FunctionError.serviceUnavailable("webhook secrets unavailable; try again shortly")
        }
        let body = Array(request.body.readableBytesView)
        let id = request.headers[Self.webhookID]
        do {
            try WebhookSignature(secrets: configured).verify(
                id: id, timestamp: request.headers[Self.webhookTimestamp], signatures: request.headers[Self.webhookSignature],
                body: body, now: now())
        } catch {
            rejections[error]?.increment()
            request.logger.warning("webhook rejected", metadata: ["reason": .string(error.rawValue)])
            throw FunctionError(
                status: .unauthorized, code: "INVALID_SIGNATURE",
                message: "webhook signature missing or wrong, or timestamp outside 5 minutes")
        }
        guard let id else { throw FunctionError.validationFailed("header 'webhook-id' is required") }  // verified above
        return (id, body)
    }

    /// The verified body as a JSON object whose `type` is exactly this endpoint's event (compared on bytes); else 400
    /// `VALIDATION_FAILED` naming `type`, before any replay claim, so a misdirected delivery changes nothing.
    func object(_ body: [UInt8], shape: String) throws(FunctionError) -> [String: JSONValue] {
        let object = try FunctionError.jsonObject(body, "body must be a JSON object \(shape)")
        guard case .string(let type)? = object["type"] else {
            throw .validationFailed("field 'type' is required and must be '\(eventType)'")
        }
        guard type.utf8.elementsEqual(eventType.utf8) else {
            throw .validationFailed("field 'type' must be '\(eventType)' at this endpoint")
        }
        return object
    }

    /// True the first time `id` is seen within the replay window. The cache down is a 503
    /// (`unavailable` says what was not done), so the host retries.
    func claim(_ id: String, unavailable: String) async throws(FunctionError) -> Bool {
        do {
            return try await cache.setIfAbsent(claimKey(id), [1], ttl: Self.replayWindow)
        } catch {
            throw FunctionError.serviceUnavailable(unavailable)
        }
    }

    /// Gives a claim back after the work failed, so the host's retry is not swallowed.
    func release(_ id: String) async {
        _ = try? await cache.delete([claimKey(id)])
    }

    private func claimKey(_ id: String) -> String {
        CacheKey.make(Self.namespace, Array(id.utf8))
    }
}

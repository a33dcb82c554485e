import CoreMetrics
import Foundation
import FunctionRuntime
import HTTPTypes

/// `POST /webhooks/rbac-changed` — the host says a user's (or a whole tenant's) permissions
/// changed: verify the Standard Webhooks signature over the raw body, then purge
/// `rbac:{tenant}:{user}` (or every entry of the tenant, by SCAN) in the shared cache and every
/// instance's L1 (pub/sub), and audit `RBAC_CACHE_PURGED`. A `webhook-id` seen in the last
/// 10 minutes is answered 204 without a second purge (claimed with `SET NX` in the shared cache
/// only after the signature and body are valid; released again if the purge fails, so the host's
/// retry is not swallowed). Bad signature → 401 `INVALID_SIGNATURE`, bad body → 400; neither purges.
struct PurgeRBACCache: HTTPFunction {
    static let webhookID = HTTPField.Name("webhook-id")!
    static let webhookTimestamp = HTTPField.Name("webhook-timestamp")!
    static let webhookSignature = HTTPField.Name("webhook-signature")!
    static let replayWindow: Duration = .seconds(600)

    let secrets: Secrets
    let rbac: RBACService
    let cache: any KeyValueCache
    let audit: any AuditSink
    let rejections: [WebhookSignature.Rejection: CoreMetrics.Counter]
    let now: @Sendable () -> Int64

    init(
        secrets: Secrets, rbac: RBACService, cache: any KeyValueCache, audit: any AuditSink, metrics: any MetricsFactory,
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.secrets = secrets
        self.rbac = rbac
        self.cache = cache
        self.audit = audit
        self.now = now
        var rejections: [WebhookSignature.Rejection: CoreMetrics.Counter] = [:]
        for reason in [WebhookSignature.Rejection.missingHeader, .badTimestamp, .stale, .noSecret, .mismatch] {
            rejections[reason] = CoreMetrics.Counter(
                label: "fnhost_webhook_rejections_total", dimensions: [("reason", reason.rawValue)], factory: metrics)
        }
        self.rejections = rejections
    }

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        let configured: String?
        do {
            configured = try await secrets.secret(named: "WEBHOOK_HMAC_SECRET")
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
        let (tenant, user) = try Self.parse(body)
        guard let id else { throw FunctionError.validationFailed("header 'webhook-id' is required") }  // verified above
        let claim = CacheKey.make("webhook-seen", Array(id.utf8))
        let first: Bool
        do {
            first = try await cache.setIfAbsent(claim, [1], ttl: Self.replayWindow)
        } catch {
            throw FunctionError.serviceUnavailable("the cache is unavailable; the purge was not applied, retry")
        }
        guard first else {
            request.logger.info("webhook replay ignored", metadata: ["webhook_id": .string(id)])
            return .noContent()
        }
        let removed: Int
        do {
            removed = try await rbac.purge(tenant: tenant, user: user)
        } catch {
            _ = try? await cache.delete([claim])
            throw FunctionError.serviceUnavailable("the cache is unavailable; the purge was not applied, retry")
        }
        var details: [String: JSONValue] = ["webhook_id": .string(id), "entries_removed": .number(Double(removed))]
        details["user_id"] = user.map { JSONValue.string($0.text) } ?? .null
        await audit.record(
            AuditRecord(tenantID: tenant, actorSub: nil, actorEmail: nil, eventType: "RBAC_CACHE_PURGED", severity: .info, details: details))
        request.logger.info(
            "rbac cache purged",
            metadata: ["tenant_id": .string(tenant.text), "scope": .string(user == nil ? "tenant" : "user"), "removed": .stringConvertible(removed)])
        return .noContent()
    }

    /// `{"tenant_id": "...", "user_id": "..."}`; `user_id` optional (absent or null: the whole tenant).
    /// Other members are ignored (the host may add some). Ids as in tokens (SPEC §5): 1…128 bytes,
    /// no control characters; `platform` is no tenant.
    static func parse(_ body: [UInt8]) throws(FunctionError) -> (TenantID, UserID?) {
        let object = try FunctionError.jsonObject(body, "body must be a JSON object {\"tenant_id\", \"user_id\"?}")
        func id(_ value: JSONValue?, _ field: String) throws(FunctionError) -> String? {
            switch value {
            case nil, .null?: return nil
            case .string(let text)? where UserID.isWellFormed(text):
                return text
            default: throw .validationFailed("field '\(field)' must be a string of 1 to 128 characters")
            }
        }
        guard let tenantText = try id(object["tenant_id"], "tenant_id") else {
            throw .validationFailed("field 'tenant_id' is required")
        }
        guard let tenant = TenantID(validating: tenantText) else { throw .validationFailed("field 'tenant_id' is not a tenant id") }
        let user = try id(object["user_id"], "user_id").map { (text) throws(FunctionError) -> UserID in
            guard let user = UserID(validating: text) else { throw .validationFailed("field 'user_id' is not a user id") }
            return user
        }
        return (tenant, user)
    }
}

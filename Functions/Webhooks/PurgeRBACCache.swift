import CoreMetrics
import Foundation
import FunctionRuntime
import HTTPTypes

/// `POST /webhooks/rbac-changed` — the host says a user's (or a whole tenant's) permissions
/// changed: verify the Standard Webhooks signature over the raw body and its `type`, record the purge in
/// the database (`rbac_purges`: every instance refuses answers asked for before it), then purge
/// `rbac:{tenant}:{user}` (or every entry of the tenant, by SCAN) in the shared cache and every
/// instance's L1 (pub/sub), and audit `RBAC_CACHE_PURGED`. Database down → 503, nothing purged. A `webhook-id` seen in the last
/// 10 minutes is answered 204 without a second purge (claimed with `SET NX` in the shared cache
/// only after the signature and body are valid; released again if the purge fails, so the host's
/// retry is not swallowed). Bad signature → 401 `INVALID_SIGNATURE`, bad body → 400; neither purges.
struct PurgeRBACCache: HTTPFunction {
    static let webhookID = WebhookIntake.webhookID
    static let webhookTimestamp = WebhookIntake.webhookTimestamp
    static let webhookSignature = WebhookIntake.webhookSignature

    static let eventType = "rbac.changed"

    let intake: WebhookIntake
    let rbac: RBACService
    let audit: any AuditSink

    init(
        secrets: Secrets, rbac: RBACService, cache: any KeyValueCache, audit: any AuditSink, metrics: any MetricsFactory,
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        intake = WebhookIntake(secrets: secrets, cache: cache, eventType: Self.eventType, metrics: metrics, now: now)
        self.rbac = rbac
        self.audit = audit
    }

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        let (id, body) = try await intake.authenticate(request)
        let (tenant, user) = try Self.parse(intake.object(body, shape: Self.shape))
        guard try await intake.claim(id, unavailable: "the cache is unavailable; the purge was not applied, retry") else {
            request.logger.info("webhook replay ignored", metadata: ["webhook_id": .string(id)])
            return .noContent()
        }
        let removed: Int
        do {
            removed = try await rbac.purge(tenant: tenant, user: user)
        } catch {
            await intake.release(id)
            request.logger.error("rbac purge not recorded", metadata: ["reason": .string(error.description)])
            throw FunctionError.serviceUnavailable("the database is unavailable; the purge was not recorded, retry")
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

    static let shape = #"{"type": "rbac.changed", "tenant_id", "user_id"?}"#

    /// `{"type": "rbac.changed", "tenant_id": "...", "user_id": "..."}` (`type` checked by the intake); `user_id`
    /// optional (absent or null: the whole tenant). Other members are ignored (the host may add some). Ids as in
    /// tokens (docs/security.md): 1…128 bytes, no control characters; `platform` is no tenant.
    static func parse(_ object: [String: JSONValue]) throws(FunctionError) -> (TenantID, UserID?) {
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

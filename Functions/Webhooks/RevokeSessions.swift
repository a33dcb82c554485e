import CoreMetrics
import Foundation
import FunctionRuntime

/// `POST /webhooks/sessions-revoked` — the host revoked sessions (docs/operations.md): one token (`jti`),
/// a user's tokens or a whole tenant's tokens issued at or before `revoked_before`. Signed and
/// replay-protected exactly like the RBAC purge (`WebhookIntake`). 204 only once the revocation is
/// stored in the database (every instance reads it there) and published to them; the database down,
/// or the cache down for the replay claim, is a 503 (the host retries) and nothing is claimed. Audited `SESSION_REVOKED` on the tenant's chain.
struct RevokeSessions: HTTPFunction {
    /// A `revoked_before` this far ahead of the clock is refused: revocation is not a ban on future logins.
    static let futureTolerance: Int64 = 300
    static let maxTokenIDBytes = 256
    static let eventType = "sessions.revoked"
    static let shape = #"{"type": "sessions.revoked", "tenant_id", "user_id"?, "jti"?, "revoked_before"?}"#

    let intake: WebhookIntake
    let revocations: Revocations
    let audit: any AuditSink
    let now: @Sendable () -> Int64

    init(
        secrets: Secrets, revocations: Revocations, cache: any KeyValueCache, audit: any AuditSink, metrics: any MetricsFactory,
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        intake = WebhookIntake(secrets: secrets, cache: cache, eventType: Self.eventType, metrics: metrics, now: now)
        self.revocations = revocations
        self.audit = audit
        self.now = now
    }

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        let (id, body) = try await intake.authenticate(request)
        let now = now()
        let revocation = try Self.parse(intake.object(body, shape: Self.shape), now: now)
        guard try await intake.claim(id, unavailable: "the cache is unavailable; the revocation was not stored, retry") else {
            request.logger.info("webhook replay ignored", metadata: ["webhook_id": .string(id)])
            return .noContent()
        }
        // Something that can no longer cover a valid token needs no storing, only the record.
        if revocation.expiresAt > now {
            do {
                try await revocations.revoke(revocation, now: now)
            } catch {
                await intake.release(id)
                request.logger.error("revocation not stored", metadata: ["reason": .string(error.description)])
                throw FunctionError.serviceUnavailable("the database is unavailable; the revocation was not stored, retry")
            }
        }
        var details: [String: JSONValue] = [
            "webhook_id": .string(id), "scope": .string(revocation.scopeName), "revoked_before": .number(Double(revocation.revokedBefore)),
        ]
        switch revocation.scope {
        case .token(let jti): details["jti"] = .string(String(decoding: jti, as: UTF8.self))
        case .user(let user): details["user_id"] = .string(user.text)
        case .tenant: break
        }
        await audit.record(
            AuditRecord(tenantID: revocation.tenant, actorSub: nil, actorEmail: nil, eventType: "SESSION_REVOKED", severity: .warning, details: details))
        request.logger.info(
            "sessions revoked", metadata: ["tenant_id": .string(revocation.tenant.text), "scope": .string(revocation.scopeName)])
        return .noContent()
    }

    /// `{"type": "sessions.revoked", "tenant_id", "user_id"?, "jti"?, "revoked_before"?}` (`type` checked by the
    /// intake): `jti` wins over `user_id`; without
    /// either the whole tenant. `revoked_before`: whole unix seconds, default now, at most 5 minutes
    /// ahead. Other members are ignored (the host may add some).
    static func parse(_ object: [String: JSONValue], now: Int64) throws(FunctionError) -> Revocation {
        guard case .string(let tenantText)? = object["tenant_id"] else { throw .validationFailed("field 'tenant_id' is required") }
        guard let tenant = TenantID(validating: tenantText) else { throw .validationFailed("field 'tenant_id' is not a tenant id") }
        let revokedBefore: Int64
        switch object["revoked_before"] {
        case nil, .null?:
            revokedBefore = now
        case .number(let value)?:
            guard let seconds = Bounded.unixSeconds(value), seconds <= now + futureTolerance else {
                throw .validationFailed("field 'revoked_before' must be whole unix seconds, at most 5 minutes ahead")
            }
            revokedBefore = seconds
        default:
            throw .validationFailed("field 'revoked_before' must be a number of unix seconds")
        }
        switch object["jti"] {
        case nil, .null?:
            break
        case .string(let jti)? where (1...maxTokenIDBytes).contains(jti.utf8.count) && jti.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7F }):
            return Revocation(tenant: tenant, scope: .token(jti: Array(jti.utf8)), revokedBefore: revokedBefore, now: now)
        default:
            throw .validationFailed("field 'jti' must be a string of 1 to \(maxTokenIDBytes) bytes without control characters")
        }
        switch object["user_id"] {
        case nil, .null?:
            return Revocation(tenant: tenant, scope: .tenant, revokedBefore: revokedBefore, now: now)
        case .string(let text)?:
            guard let user = UserID(validating: text) else { throw .validationFailed("field 'user_id' is not a user id") }
            return Revocation(tenant: tenant, scope: .user(user), revokedBefore: revokedBefore, now: now)
        default:
            throw .validationFailed("field 'user_id' must be a string of 1 to 128 characters")
        }
    }
}

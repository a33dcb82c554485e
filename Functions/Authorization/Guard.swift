import CoreMetrics
import HTTPTypes
import FunctionRuntime
import Logging

/// A function that runs only for an authorized caller; its policy is declared with it.
protocol AuthorizedFunction: Sendable {
    static var policy: FunctionPolicy { get }
    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse
}

/// Authentication and authorization in front of every protected function: bearer token →
/// `TokenVerifier` → `Authorizer` → handler. A handler cannot forget the check, and the
/// policy is readable from outside (for OpenAPI and tests).
struct Security: Sendable {
    let verifier: TokenVerifier
    let authorizer: Authorizer
    /// Per tenant+user budget (GCRA), checked right after authentication; nil: unlimited.
    let limiter: (any RateLimiter)?
    private let rejections: [TokenRejection: CoreMetrics.Counter]
    private let limited: CoreMetrics.Counter

    init(verifier: TokenVerifier, authorizer: Authorizer, limiter: (any RateLimiter)? = nil, metrics: any MetricsFactory) {
        self.verifier = verifier
        self.authorizer = authorizer
        self.limiter = limiter
        limited = CoreMetrics.Counter(label: "fnhost_rate_limited_total", factory: metrics)
        var rejections: [TokenRejection: CoreMetrics.Counter] = [:]
        for reason in [
            TokenRejection.missing, .notBearer, .tooLarge, .malformed, .algorithmNotAllowed, .kidMissing, .kidUnknown,
            .keysUnavailable, .signatureInvalid, .issuerMismatch, .audienceMismatch, .expired, .notYetValid,
            .issuedInFuture, .lifetimeTooLong, .claimMissing, .identifierInvalid, .revoked, .revocationsUnknown,
        ] {
            rejections[reason] = CoreMetrics.Counter(
                label: "fnhost_auth_rejections_total", dimensions: [("reason", reason.rawValue)], factory: metrics)
        }
        self.rejections = rejections
    }

    /// Spends one request of the caller's budget; over budget → 429 `RATE_LIMITED` with `Retry-After`
    /// and the IETF `RateLimit` / `RateLimit-Policy` fields.
    func spend(_ identity: Identity) async throws(FunctionError) -> RateLimitDecision? {
        guard let limiter else { return nil }
        let decision = await limiter.check(CacheKey.make("rl", identity.tenantID.bytes, identity.subject.bytes))
        guard decision.allowed else {
            limited.increment()
            var headers = HTTPFields()
            RateLimitHeaders.apply(decision, policy: limiter.policy, to: &headers)
            throw FunctionError(
                status: .tooManyRequests, code: "RATE_LIMITED", message: "too many requests; retry after the Retry-After delay",
                headers: headers)
        }
        return decision
    }

    func guarded<Handler: AuthorizedFunction>(_ handler: Handler) -> some HTTPFunction {
        GuardedFunction(security: self, handler: handler)
    }

    func authenticate(_ request: FunctionRequest) async throws(FunctionError) -> Identity {
        do {
            let token = try TokenVerifier.bearerToken(request.headers[.authorization])
            return try await verifier.verify(token)
        } catch {
            rejections[error]?.increment()
            request.logger.info("token rejected", metadata: ["reason": .string(error.rawValue)])
            if error == .keysUnavailable {
                throw FunctionError.serviceUnavailable("token keys unavailable; try again shortly")
            }
            if error == .revocationsUnknown {
                throw FunctionError.serviceUnavailable("session revocations could not be read; try again shortly")
            }
            throw FunctionError.unauthenticated("missing, malformed, expired or otherwise invalid token")
        }
    }
}

private struct GuardedFunction<Handler: AuthorizedFunction>: HTTPFunction {
    let security: Security
    let handler: Handler

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        let identity = try await security.authenticate(request)
        var request = request
        request.logger[metadataKey: "tenant_id"] = .string(identity.tenantID.text)
        // The invocation's span carries the tenant (an id, never a token or a secret).
        InvocationAttributes.current?.set("fnhost.tenant_id", .string(identity.tenantID.text))
        let budget = try await security.spend(identity)
        let principal = try await security.authorizer.authorize(identity, policy: Handler.policy, logger: request.logger)
        var response = try await handler.handle(request, principal: principal)
        if let budget, let limiter = security.limiter {
            RateLimitHeaders.apply(budget, policy: limiter.policy, to: &response.headers)
        }
        return response
    }
}

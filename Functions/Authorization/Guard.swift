import CoreMetrics
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
    private let rejections: [TokenRejection: CoreMetrics.Counter]

    init(verifier: TokenVerifier, authorizer: Authorizer, metrics: any MetricsFactory) {
        self.verifier = verifier
        self.authorizer = authorizer
        var rejections: [TokenRejection: CoreMetrics.Counter] = [:]
        for reason in [
            TokenRejection.missing, .notBearer, .tooLarge, .malformed, .algorithmNotAllowed, .kidMissing, .kidUnknown,
            .keysUnavailable, .signatureInvalid, .issuerMismatch, .audienceMismatch, .expired, .notYetValid,
            .issuedInFuture, .lifetimeTooLong, .claimMissing,
        ] {
            rejections[reason] = CoreMetrics.Counter(
                label: "fnhost_auth_rejections_total", dimensions: [("reason", reason.rawValue)], factory: metrics)
        }
        self.rejections = rejections
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
        request.logger[metadataKey: "tenant_id"] = .string(identity.tenantID)
        let principal = try await security.authorizer.authorize(identity, policy: Handler.policy, logger: request.logger)
        return try await handler.handle(request, principal: principal)
    }
}

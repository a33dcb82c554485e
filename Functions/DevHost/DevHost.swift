import Crypto
import Foundation
import FunctionRuntime
import HTTPTypes
import NIOCore

/// The development host's RBAC answers, from the directory `fnhost token` writes.
struct DevHostRBAC: RBACSource {
    let store: DevHostStore

    func effective(tenant: TenantID, user: UserID) async throws(RBACFetchError) -> RBACAnswer {
        let directory = store.directory()
        guard !directory.rbacFailing else { throw RBACFetchError(description: "development host RBAC is switched to fail") }
        let entry = directory.user(tenant: tenant, user: user)
        return RBACAnswer(
            tenantID: tenant.text, userID: user.text, permissions: entry?.permissions ?? [], groups: entry?.groups ?? [],
            ttlSeconds: 60, assurance: RBACAnswer.Assurance(mfa: entry?.mfa ?? false, level: entry?.mfa == true ? "high" : "low"))
    }
}

/// `/.dev-host/jwks.json`, `/.dev-host/rbac/effective`, `/.dev-host/email/send` (docs/identity.md).
struct DevHostEndpoints: HTTPFunction {
    static let prefix = "/.dev-host/"
    let store: DevHostStore

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        switch (request.method, request.path) {
        case (.get, "/.dev-host/jwks.json"):
            var response = FunctionResponse.json(try store.jwks())
            response.headers[.cacheControl] = "max-age=60"
            return response
        case (.get, "/.dev-host/rbac/effective"):
            guard let tenantText = try request.singleQuery("tenant_id"), let userText = try request.singleQuery("user_id") else {
                throw FunctionError.validationFailed("tenant_id and user_id are required")
            }
            guard let tenant = TenantID(validating: tenantText), let user = UserID(validating: userText) else {
                throw FunctionError.notFound("no such tenant or user")
            }
            let answer: RBACAnswer
            do {
                answer = try await DevHostRBAC(store: store).effective(tenant: tenant, user: user)
            } catch {
                throw FunctionError.serviceUnavailable(error.description)
            }
            return .json(Array(try JSONEncoder().encode(answer)))
        case (.post, "/.dev-host/email/send"):
            guard let body = try? JSONReader.parse(request.body.readableBytesView),
                let tenant = body["tenant_id"]?.stringValue, let key = body["idempotency_key"]?.stringValue
            else { throw FunctionError.validationFailed("tenant_id and idempotency_key are required") }
            // The same key always yields the same message id, as the real host promises.
            let messageID = DevHostStore.messageID(tenant: tenant, idempotencyKey: key)
            return .json { writer in
                writer.beginObject()
                writer.field("message_id", messageID)
                writer.endObject()
            }
        default:
            throw FunctionError.notFound("no such development host endpoint")
        }
    }
}

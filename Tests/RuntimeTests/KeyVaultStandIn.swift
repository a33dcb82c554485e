import Foundation
import TestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore

/// A local stand-in for Azure Key Vault and the identity endpoints, implementing the documented
/// wire formats: `GET /secrets/{name}[/{version}]?api-version=7.4` (SecretBundle / KeyVaultError),
/// the App Service managed-identity endpoint, and the Entra client-credentials token endpoint.
actor KeyVaultState {
    var secrets: [String: [(version: String, value: String)]] = [:]
    var forbidden: Set<String> = []
    var throttleFirst: [String: Int] = [:]
    /// 503 with this `Retry-After` for the next N requests of a secret.
    var unavailableFirst: [String: (times: Int, retryAfter: String)] = [:]
    var identityHeader = "identity-header-value"
    var tokenLifetime: TimeInterval = 3600
    var validTokens: Set<String> = []
    var tokenRequests = 0
    var secretRequests = 0
    var lastResource: String?

    func put(_ name: String, _ value: String, version: String = UUID().uuidString.lowercased()) {
        secrets[name, default: []].append((version, value))
    }

    func set(forbidden names: Set<String>) { forbidden = names }
    func set(throttle name: String, times: Int) { throttleFirst[name] = times }
    func set(unavailable name: String, times: Int, retryAfter: String) { unavailableFirst[name] = (times, retryAfter) }
    func set(tokenLifetime: TimeInterval) { self.tokenLifetime = tokenLifetime }
    func revokeTokens() { validTokens.removeAll() }

    func issueToken() -> (String, Date) {
        tokenRequests += 1
        let token = "token-\(tokenRequests)-\(UUID().uuidString)"
        validTokens.insert(token)
        return (token, Date().addingTimeInterval(tokenLifetime))
    }

    func noteResource(_ resource: String?) { lastResource = resource }

    enum Answer { case ok(String, String), unauthorized, forbidden, notFound, throttled, unavailable(String) }

    func answer(name: String, version: String?, token: String?) -> Answer {
        secretRequests += 1
        guard let token, validTokens.contains(token) else { return .unauthorized }
        if let remaining = throttleFirst[name], remaining > 0 {
            throttleFirst[name] = remaining - 1
            return .throttled
        }
        if let pending = unavailableFirst[name], pending.times > 0 {
            unavailableFirst[name] = (pending.times - 1, pending.retryAfter)
            return .unavailable(pending.retryAfter)
        }
        if forbidden.contains(name) { return .forbidden }
        guard let versions = secrets[name], let latest = versions.last else { return .notFound }
        if let version {
            guard let match = versions.first(where: { $0.version == version }) else { return .notFound }
            return .ok(match.value, match.version)
        }
        return .ok(latest.value, latest.version)
    }
}

struct KeyVaultStandIn {
    let state = KeyVaultState()

    func application() -> some ApplicationProtocol {
        let router = Router()
        let state = state
        @Sendable func json(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields = [:]) -> Response {
            var fields = headers
            fields[.contentType] = "application/json; charset=utf-8"
            return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        @Sendable func secret(_ request: Request, _ context: BasicRequestContext, version: String?) async -> Response {
            guard request.uri.queryParameters.get("api-version") == "7.4" else {
                return json(.badRequest, #"{"error":{"code":"BadParameter","message":"api-version"}}"#)
            }
            let name = context.parameters.get("name") ?? ""
            let token = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
            switch await state.answer(name: name, version: version, token: token) {
            case .ok(let value, let version):
                return json(.ok, #"{"value":"\#(value)","id":"https://stand-in.vault.azure.net/secrets/\#(name)/\#(version)","attributes":{"enabled":true,"created":1493938410,"updated":1493938410,"recoveryLevel":"Recoverable+Purgeable"}}"#)
            case .unauthorized:
                return json(
                    .unauthorized, #"{"error":{"code":"Unauthorized","message":"AKV10022: Invalid audience."}}"#,
                    headers: [.wwwAuthenticate: #"Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net""#])
            case .forbidden:
                return json(.forbidden, #"{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.","innererror":{"code":"ForbiddenByRbac"}}}"#)
            case .notFound:
                return json(.notFound, #"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) \#(name) was not found in this key vault."}}"#)
            case .unavailable(let retryAfter):
                return json(.serviceUnavailable, #"{"error":{"code":"ServiceUnavailable","message":"try later"}}"#, headers: [HTTPField.Name("Retry-After")!: retryAfter])
            case .throttled:
                return json(.tooManyRequests, #"{"error":{"code":"Throttled","message":"Too many requests"}}"#, headers: [HTTPField.Name("Retry-After")!: "1"])
            }
        }
        router.get("/secrets/:name") { request, context in await secret(request, context, version: nil) }
        router.get("/secrets/:name/:version") { request, context in
            await secret(request, context, version: context.parameters.get("version"))
        }
        router.get("/msi/token") { request, _ in
            guard request.headers[HTTPField.Name("X-IDENTITY-HEADER")!] == (await state.identityHeader) else {
                return json(.badRequest, #"{"error":"invalid_request"}"#)
            }
            await state.noteResource(request.uri.queryParameters.get("resource").map { String($0) })
            guard request.uri.queryParameters.get("api-version") == "2019-08-01" else {
                return json(.badRequest, #"{"error":"invalid api-version"}"#)
            }
            let (token, expires) = await state.issueToken()
            return json(.ok, #"{"access_token":"\#(token)","expires_on":"\#(Int(expires.timeIntervalSince1970))","resource":"https://vault.azure.net","token_type":"Bearer","client_id":"c"}"#)
        }
        router.post("/:tenant/oauth2/v2.0/token") { request, _ in
            var request = request
            let body = String(buffer: try await request.collectBody(upTo: 1 << 16))
            guard body.contains("grant_type=client_credentials"), body.contains("client_secret=sp-secret-value"),
                body.contains("scope=https%3A%2F%2Fvault.azure.net%2F.default")
            else { return json(.unauthorized, #"{"error":"invalid_client"}"#) }
            let (token, expires) = await state.issueToken()
            return json(.ok, #"{"token_type":"Bearer","expires_in":\#(Int(expires.timeIntervalSinceNow)),"access_token":"\#(token)"}"#)
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }
}

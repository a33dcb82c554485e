import Crypto
import CryptoExtras
import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization

@testable import Functions

/// Keys generated at test time (never committed).
struct TestKey: Sendable {
    let kid: String
    let key: _RSA.Signing.PrivateKey

    static func make(kid: String, bits: Int = 2048) throws -> TestKey {
        let key = bits >= 2048
            ? try _RSA.Signing.PrivateKey(keySize: .init(bitCount: bits))
            : try _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: bits))
        return TestKey(kid: kid, key: key)
    }

    var jwk: JSONValue {
        let primitives = (try? key.publicKey.getKeyPrimitives()) ?? .init(modulus: Data(), publicExponent: Data())
        return .object([
            "kty": .string("RSA"), "use": .string("sig"), "alg": .string("RS256"), "kid": .string(kid),
            "n": .string(Base64URL.encode(primitives.modulus)), "e": .string(Base64URL.encode(primitives.publicExponent)),
        ])
    }
}

enum Signing {
    case rs256(TestKey)
    case rs512(TestKey)
    case ps256(TestKey)
    case hs256([UInt8])
    case none
}

enum Tokens {
    static let issuer = "https://host.test"
    static let audience = "fnhost-module"

    static func claims(
        tenant: String? = "t-acme", sub: String? = "u-42", email: String? = "ada@acme.example", lifetime: Double = 3600,
        issuedAgo: Double = 10, extra: [String: JSONValue] = [:]
    ) -> [String: JSONValue] {
        let now = Date().timeIntervalSince1970
        var claims: [String: JSONValue] = [
            "iss": .string(issuer), "aud": .string(audience), "iat": .number((now - issuedAgo).rounded()),
            "exp": .number((now - issuedAgo + lifetime).rounded()),
        ]
        if let tenant { claims["tenant_id"] = .string(tenant) }
        if let sub { claims["sub"] = .string(sub) }
        if let email { claims["email"] = .string(email) }
        for (key, value) in extra { claims[key] = value }
        return claims
    }

    static func make(_ claims: [String: JSONValue], signing: Signing, header: [String: JSONValue]? = nil) throws -> String {
        var head: [String: JSONValue] = ["typ": .string("JWT")]
        switch signing {
        case .rs256(let key): head["alg"] = .string("RS256"); head["kid"] = .string(key.kid)
        case .rs512(let key): head["alg"] = .string("RS512"); head["kid"] = .string(key.kid)
        case .ps256(let key): head["alg"] = .string("PS256"); head["kid"] = .string(key.kid)
        case .hs256: head["alg"] = .string("HS256")
        case .none: head["alg"] = .string("none")
        }
        if let header { head = header }
        func encode(_ value: JSONValue) -> String {
            var writer = JSONWriter()
            value.write(to: &writer)
            return Base64URL.encode(writer.bytes)
        }
        let input = encode(.object(head)) + "." + encode(.object(claims))
        let data = Array(input.utf8)
        let signature: [UInt8]
        switch signing {
        case .rs256(let key):
            signature = Array(try key.key.signature(for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5).rawRepresentation)
        case .rs512(let key):
            signature = Array(try key.key.signature(for: SHA512.hash(data: data), padding: .insecurePKCS1v1_5).rawRepresentation)
        case .ps256(let key):
            signature = Array(try key.key.signature(for: SHA256.hash(data: data), padding: .PSS).rawRepresentation)
        case .hs256(let secret):
            signature = Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: secret)))
        case .none:
            signature = []
        }
        return input + "." + Base64URL.encode(signature)
    }
}

/// A stand-in for the host platform: JWKS and RBAC, with counters and fault switches.
actor HostState {
    var keys: [TestKey] = []
    var extraJWKs: [JSONValue] = []
    var cacheControl = "max-age=600"
    var answers: [String: RBACAnswer] = [:]
    var rbacFailing = false
    var rbacDelay: Duration = .zero
    /// JWKS answers 503 while set (after counting the fetch).
    var jwksFailing = false
    var jwksFetches = 0
    var rbacFetches = 0
    var lastRBACAuthorization: String?
    /// Email: calls per idempotency key, and a failure switch (status to answer, with Retry-After).
    var emailCalls: [String: Int] = [:]
    var emailAccepted: [String: Int] = [:]
    var emailFailure: (status: Int, retryAfter: String?)?
    var emailDelay: Duration = .zero
    var lastEmailAuthorization: String?

    func set(keys: [TestKey], extra: [JSONValue] = []) { self.keys = keys; extraJWKs = extra }
    /// Answers keyed on the ids' bytes (a `String` key would merge canonically equivalent ids).
    static func key(_ tenant: String, _ user: String) -> String { CacheKey.make("a", Array(tenant.utf8), Array(user.utf8)) }
    /// A status the RBAC endpoint answers for one user instead of 200 (403, 404, 401 …).
    var rbacStatus: [String: Int] = [:]
    /// Queries the RBAC endpoint received, raw (to check the encoding of ids).
    var rbacQueries: [String] = []
    /// `traceparent` of every call, by path (`jwks`, `rbac`, `email`); "" when absent.
    var traceparents: [(path: String, value: String)] = []

    func traced(_ path: String, _ value: String?) {
        traceparents.append((path, value ?? ""))
    }
    /// RBAC requests that arrived (counted before `rbacDelay`).
    var rbacArrivals = 0
    func rbacArrived() { rbacArrivals += 1 }
    /// While held, RBAC answers wait until `releaseRBAC()` (to gather concurrent misses).
    var rbacHeld = false
    private var heldRequests: [CheckedContinuation<Void, Never>] = []
    func holdRBAC() { rbacHeld = true }
    func releaseRBAC() {
        rbacHeld = false
        for waiter in heldRequests { waiter.resume() }
        heldRequests.removeAll()
    }
    func waitIfHeld() async {
        guard rbacHeld else { return }
        await withCheckedContinuation { heldRequests.append($0) }
    }

    func set(answer: RBACAnswer) { answers[Self.key(answer.tenantID, answer.userID)] = answer }
    /// Answers `answer` when asked about (tenant, user), whatever ids the answer itself names.
    func set(answer: RBACAnswer, for tenant: String, user: String) { answers[Self.key(tenant, user)] = answer }
    func set(rbacStatus status: Int?, tenant: String, user: String) { self.rbacStatus[Self.key(tenant, user)] = status }
    func set(rbacFailing: Bool) { self.rbacFailing = rbacFailing }
    func set(rbacDelay: Duration) { self.rbacDelay = rbacDelay }
    func set(jwksFailing: Bool) { self.jwksFailing = jwksFailing }
    func set(emailFailure: (status: Int, retryAfter: String?)?) { self.emailFailure = emailFailure }
    func set(emailDelay: Duration) { self.emailDelay = emailDelay }
    /// While held, email calls (counted) wait until `releaseEmail()`.
    var emailHeld = false
    private var heldEmails: [CheckedContinuation<Void, Never>] = []
    var emailArrivals = 0
    func holdEmail() { emailHeld = true }
    func releaseEmail() {
        emailHeld = false
        for waiter in heldEmails { waiter.resume() }
        heldEmails.removeAll()
    }
    func emailArrived() async {
        emailArrivals += 1
        guard emailHeld else { return }
        await withCheckedContinuation { heldEmails.append($0) }
    }

    /// Counts the call; nil when switched to fail.
    func email(key: String, tenant: String, authorization: String?) -> String? {
        emailCalls[key, default: 0] += 1
        lastEmailAuthorization = authorization
        if emailFailure != nil { return nil }
        emailAccepted[key, default: 0] += 1
        return DevHostStore.messageID(tenant: tenant, idempotencyKey: key)
    }

    var totalEmailCalls: Int { emailCalls.values.reduce(0, +) }

    func jwks() -> String {
        jwksFetches += 1
        var writer = JSONWriter()
        JSONValue.object(["keys": .array(keys.map(\.jwk) + extraJWKs)]).write(to: &writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    func rbac(tenant: String, user: String, authorization: String?, query: String = "") -> (Int, RBACAnswer?) {
        rbacFetches += 1
        lastRBACAuthorization = authorization
        rbacQueries.append(query)
        if rbacFailing { return (500, nil) }
        if let status = rbacStatus[Self.key(tenant, user)] { return (status, nil) }
        return (200, answers[Self.key(tenant, user)] ?? RBACAnswer(tenantID: tenant, userID: user, permissions: []))
    }
}

struct StandInHost {
    let state = HostState()

    func application() -> some ApplicationProtocol {
        let router = Router()
        let state = state
        router.get("/.well-known/jwks.json") { request, _ in
            await state.traced("jwks", request.headers[HTTPField.Name("traceparent")!])
            let body = await state.jwks()
            if await state.jwksFailing { return Response(status: .serviceUnavailable) }
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: await state.cacheControl],
                body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("/api/rbac/effective") { request, _ in
            await state.traced("rbac", request.headers[HTTPField.Name("traceparent")!])
            await state.rbacArrived()
            await state.waitIfHeld()
            let delay = await state.rbacDelay
            if delay > .zero { try await Task.sleep(for: delay) }
            let tenant = request.uri.queryParameters.get("tenant_id").map { String($0) } ?? ""
            let user = request.uri.queryParameters.get("user_id").map { String($0) } ?? ""
            let (status, answer) = await state.rbac(
                tenant: tenant, user: user, authorization: request.headers[.authorization], query: request.uri.query ?? "")
            guard let answer else { return Response(status: .init(code: status)) }
            let body = try JSONEncoder().encode(answer)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
        router.post("/api/email/send") { request, _ in
            await state.traced("email", request.headers[HTTPField.Name("traceparent")!])
            await state.emailArrived()
            let delay = await state.emailDelay
            if delay > .zero { try await Task.sleep(for: delay) }
            let body = try await request.body.collect(upTo: 1 << 20)
            guard let json = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: body)), let key = json["idempotency_key"]?.stringValue,
                let tenant = json["tenant_id"]?.stringValue
            else { return Response(status: .badRequest) }
            guard let messageID = await state.email(key: key, tenant: tenant, authorization: request.headers[.authorization]) else {
                let failure = await state.emailFailure
                var headers = HTTPFields()
                if let retryAfter = failure?.retryAfter { headers[.retryAfter] = retryAfter }
                return Response(status: .init(code: failure?.status ?? 503), headers: headers)
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"message_id":"\#(messageID)"}"#)))
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }
}

/// Functions only the tests register, one per kind of policy.
struct ReadProbe: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsRead)
    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse { Probe.answer(principal) }
}

struct WriteProbe: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsWrite)
    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse { Probe.answer(principal) }
}

struct DeleteProbe: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsDelete)
    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse { Probe.answer(principal) }
}

enum Probe {
    static func answer(_ principal: Principal) -> FunctionResponse {
        .json { writer in
            writer.beginObject()
            writer.field("tenant", principal.tenantID.text)
            writer.field("sub", principal.identity.subject.text)
            writer.field("super_admin", principal.isPlatformSuperAdmin)
            writer.field("degraded", principal.degraded)
            writer.endObject()
        }
    }

    static let manifest = """
        {"functions":{
          "ReadProbe":{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["get"],"route":"probe/read"},{"type":"http","direction":"out","name":"res"}]},
          "WriteProbe":{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["post"],"route":"probe/write"},{"type":"http","direction":"out","name":"res"}]},
          "DeleteProbe":{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["delete"],"route":"probe/delete"},{"type":"http","direction":"out","name":"res"}]}
        }}
        """
}

/// The real module machinery (ModuleSetup) with the probes registered.
struct ProbeModule: FunctionModule {
    var settingDefaults: [String: String] { [:] }
    let box: ProbeModuleBox

    func configure(_ context: inout ModuleContext) async throws {
        let setup = try await ModuleSetup.make(&context, scriptRoot: context.scriptRoot)
        box.captured.withLock { $0 = setup }
        context.functions.register("ReadProbe", http: setup.security.guarded(ReadProbe()))
        context.functions.register("WriteProbe", http: setup.security.guarded(WriteProbe()))
        context.functions.register("DeleteProbe", http: setup.security.guarded(DeleteProbe()))
    }
}

final class ProbeModuleBox: Sendable {
    let captured = Mutex<ModuleSetup?>(nil)
    let hostPort = Mutex(0)
    var module: ProbeModule { ProbeModule(box: self) }
    var setup: ModuleSetup? { captured.withLock { $0 } }
}

enum IdentityHarness {
    static func scriptRoot() throws -> String { try ScriptRoot.make(manifest: Probe.manifest) }

    static func hostSettings(_ hostPort: Int, extra: [String: String] = [:]) -> [String: String] {
        [
            "ENVIRONMENT": "production",
            "HOST_JWKS_URI": "http://127.0.0.1:\(hostPort)/.well-known/jwks.json",
            "JWT_ISSUER": Tokens.issuer, "JWT_AUDIENCE": Tokens.audience,
            "HOST_RBAC_API_URL": "http://127.0.0.1:\(hostPort)/api", "HOST_RBAC_API_KEY": "rbac-api-key-value",
            "HOST_EMAIL_API": "http://127.0.0.1:\(hostPort)/api", "HOST_EMAIL_API_KEY": "email-key-value",
            "WEBHOOK_HMAC_SECRET": "whsec_dGVzdA==", "DATABASE_URL": "sqlite::memory:", "METRICS_TOKEN": "metrics-token-value",
            "CACHE_SIGNING_KEY": "test-cache-signing-key-0123456789abcdef",
            "AUDIT_SIGNING_KEY": "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
        ].merging(extra) { $1 }
    }

    /// Runs `test` with the stand-in host and a module host (both on real loopback sockets).
    static func run(
        extra: [String: String] = [:], logs: Logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
        _ test: @escaping @Sendable (StandInHost, any TestClientProtocol, ProbeModuleBox) async throws -> Void
    ) async throws {
        let host = StandInHost()
        try await host.application().test(.live) { hostClient in
            let port = hostClient.port ?? 0
            let box = ProbeModuleBox()
            box.hostPort.withLock { $0 = port }
            let functionHost = try await FunctionHost.build(
                options: .init(scriptRoot: try scriptRoot(), port: 0), module: box.module,
                environment: hostSettings(port, extra: extra), logger: logs)
            try await functionHost.application().test(.live) { client in
                try await test(host, client, box)
            }
        }
    }
}

extension TestClientProtocol {
    func call(_ method: HTTPRequest.Method, _ uri: String, token: String?) async throws -> (HTTPResponse.Status, [String: String], HTTPFields) {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer " + token }
        return try await execute(uri: uri, method: method, headers: headers) { response in
            let object = (try? JSONSerialization.jsonObject(with: Data(buffer: response.body))) as? [String: Any]
            var flat: [String: String] = [:]
            for (key, value) in object ?? [:] { flat[key] = "\(value)" }
            if let error = object?["error"] as? [String: String] { flat["code"] = error["code"] }
            return (response.status, flat, response.headers)
        }
    }
}

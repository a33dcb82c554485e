import AsyncHTTPClient
import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import Functions

/// Token validation, RBAC caching and degradation, step-up and super admin, through real HTTP:
/// a stand-in host (JWKS + RBAC) and the module's guard in front of test-only probe functions.
@Suite struct TokenValidationTests {
    @Test func everyInvalidTokenIs401WithTheChallenge() async throws {
        let key = try TestKey.make(kid: "k1")
        let other = try TestKey.make(kid: "k1")  // same kid, different key: a forged signature
        let weak = try TestKey.make(kid: "weak", bits: 1024)
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key], extra: [weak.jwk])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"]))
            let good = try Tokens.make(Tokens.claims(), signing: .rs256(key))
            let (status, body, _) = try await client.call(.get, "/probe/read", token: good)
            #expect(status == .ok)
            #expect(body["tenant"] == "t-acme")

            // The verified token is cached now; a copy with K written as KELVIN SIGN is the same Swift
            // String (canonical equivalence) but not the same bytes, and must not hit that entry.
            var kelvin = good.unicodeScalars
            let k = try #require(kelvin.firstIndex(of: "K"), "a 700-character base64url token without K")
            kelvin.replaceSubrange(k...k, with: ["\u{212A}"])
            let hostile = String(kelvin)
            #expect(hostile == good, "the precondition: Swift's String equality merges them")
            #expect(try await client.call(.get, "/probe/read", token: hostile).0 == .unauthorized)
            #expect(try await client.call(.get, "/probe/read", token: good + "\u{301}").0 == .unauthorized)

            let publicPEM = Array(key.key.publicKey.pemRepresentation.utf8)
            let now = Date().timeIntervalSince1970
            let cases: [(String, String?)] = [
                ("missing", nil),
                ("garbage", "not.a.jwt"),
                ("two parts", "abc.def"),
                ("expired", try Tokens.make(Tokens.claims(lifetime: 600, issuedAgo: 700), signing: .rs256(key))),
                ("lifetime over 4 h", try Tokens.make(Tokens.claims(lifetime: 14_401), signing: .rs256(key))),
                ("far-future exp without iat", try Tokens.make(Tokens.claims().merging(["iat": .null]) { $1 }, signing: .rs256(key))),
                ("iat in the future", try Tokens.make(Tokens.claims(issuedAgo: -300), signing: .rs256(key))),
                ("nbf in the future", try Tokens.make(Tokens.claims(extra: ["nbf": .number(now + 300)]), signing: .rs256(key))),
                ("wrong iss", try Tokens.make(Tokens.claims(extra: ["iss": .string("https://evil.test")]), signing: .rs256(key))),
                ("aud missing", try Tokens.make(Tokens.claims().filter { $0.key != "aud" }, signing: .rs256(key))),
                ("aud other", try Tokens.make(Tokens.claims(extra: ["aud": .string("someone-else")]), signing: .rs256(key))),
                ("aud empty array", try Tokens.make(Tokens.claims(extra: ["aud": .array([])]), signing: .rs256(key))),
                ("alg none", try Tokens.make(Tokens.claims(), signing: .none)),
                ("HS256 with the public key", try Tokens.make(Tokens.claims(), signing: .hs256(publicPEM),
                    header: ["alg": .string("HS256"), "kid": .string("k1"), "typ": .string("JWT")])),
                ("RS512", try Tokens.make(Tokens.claims(), signing: .rs512(key))),
                ("PS256", try Tokens.make(Tokens.claims(), signing: .ps256(key))),
                ("missing kid", try Tokens.make(Tokens.claims(), signing: .rs256(key), header: ["alg": .string("RS256")])),
                ("forged signature", try Tokens.make(Tokens.claims(), signing: .rs256(other))),
                ("1024-bit key", try Tokens.make(Tokens.claims(), signing: .rs256(weak))),
                ("missing tenant_id", try Tokens.make(Tokens.claims(tenant: nil), signing: .rs256(key))),
                ("missing email", try Tokens.make(Tokens.claims(email: nil), signing: .rs256(key))),
                ("missing sub", try Tokens.make(Tokens.claims(sub: nil), signing: .rs256(key))),
                ("over 8 KiB", try Tokens.make(Tokens.claims(extra: ["pad": .string(String(repeating: "x", count: 8 * 1024))]), signing: .rs256(key))),
            ]
            for (name, token) in cases {
                let (status, body, headers) = try await client.call(.get, "/probe/read", token: token)
                #expect(status == .unauthorized, "\(name)")
                #expect(body["code"] == "UNAUTHENTICATED", "\(name)")
                #expect(headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#, "\(name)")
            }
            let (basic, _, _) = try await client.execute(uri: "/probe/read", method: .get, headers: [.authorization: "Basic dTpw"]) {
                ($0.status, 0, 0)
            }
            #expect(basic == .unauthorized)
            #expect(await host.state.jwksFetches <= 3, "junk kids must not hammer the host")
        }
    }

    @Test func audienceArrayContainingOursIsAccepted() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"]))
            let token = try Tokens.make(
                Tokens.claims(extra: ["aud": .array([.string("other"), .string(Tokens.audience)])]), signing: .rs256(key))
            let status1 = try await client.call(.get, "/probe/read", token: token).0
            #expect(status1 == .ok)
            let leeway = try Tokens.make(Tokens.claims(lifetime: 600, issuedAgo: 630), signing: .rs256(key))
            let status2 = try await client.call(.get, "/probe/read", token: leeway).0
            #expect(status2 == .ok, "expired 30 s ago is within the 60 s leeway")
        }
    }

    @Test func unknownKidRefetchesOnceThenNotAgainWithin30Seconds() async throws {
        let key = try TestKey.make(kid: "k1")
        let stranger = try TestKey.make(kid: "unknown-kid")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"]))
            let status3 = try await client.call(.get, "/probe/read", token: try Tokens.make(Tokens.claims(), signing: .rs256(key))).0
            #expect(status3 == .ok)
            #expect(await host.state.jwksFetches == 1)
            let strange = try Tokens.make(Tokens.claims(), signing: .rs256(stranger))
            let status4 = try await client.call(.get, "/probe/read", token: strange).0
            #expect(status4 == .unauthorized)
            #expect(await host.state.jwksFetches == 2, "one refetch for the unknown kid")
            for _ in 0..<5 {
                let status5 = try await client.call(.get, "/probe/read", token: strange).0
                #expect(status5 == .unauthorized)
            }
            #expect(await host.state.jwksFetches == 2, "no second fetch within 30 s")
        }
    }

    @Test func keyRotationIsPickedUp() async throws {
        let first = try TestKey.make(kid: "k1")
        let second = try TestKey.make(kid: "k2")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [first])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"]))
            let status6 = try await client.call(.get, "/probe/read", token: try Tokens.make(Tokens.claims(), signing: .rs256(first))).0
            #expect(status6 == .ok)
            await host.state.set(keys: [second, first])
            let status7 = try await client.call(.get, "/probe/read", token: try Tokens.make(Tokens.claims(), signing: .rs256(second))).0
            #expect(status7 == .ok)
            #expect(await host.state.jwksFetches == 2)
        }
    }
}

@Suite struct AuthorizationTests {
    private static func token(_ key: TestKey, extra: [String: JSONValue] = [:]) throws -> String {
        try Tokens.make(Tokens.claims(extra: extra), signing: .rs256(key))
    }

    @Test func freshAnswersAreCachedAndHostTTLIsHonoured() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"], ttlSeconds: 4))
            let token = try Self.token(key)
            let status8 = try await client.call(.get, "/probe/read", token: token).0
            #expect(status8 == .ok)
            let status9 = try await client.call(.get, "/probe/read", token: token).0
            #expect(status9 == .ok)
            #expect(await host.state.rbacFetches == 1, "second request served from cache")
            #expect(await host.state.lastRBACAuthorization == "Bearer rbac-api-key-value")
            try await Task.sleep(for: .milliseconds(4300))
            let status10 = try await client.call(.get, "/probe/read", token: token).0
            #expect(status10 == .ok)
            #expect(await host.state.rbacFetches == 2, "ttl_seconds: 4 expired, so the host is asked again")
        }
    }

    @Test func hostDownServesStaleToReadsOnlyAndNothingWithoutAnEntry() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(
                answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ", "LEADS_WRITE"], ttlSeconds: 1))
            let token = try Self.token(key)
            let status11 = try await client.call(.get, "/probe/read", token: token).0
            #expect(status11 == .ok)
            let status12 = try await client.call(.post, "/probe/write", token: token).0
            #expect(status12 == .ok)
            try await Task.sleep(for: .milliseconds(1200))
            await host.state.set(rbacFailing: true)

            let (readStatus, readBody, _) = try await client.call(.get, "/probe/read", token: token)
            #expect(readStatus == .ok, "a stale entry serves a read-only action")
            #expect(readBody["degraded"] == "1")
            let (writeStatus, writeBody, _) = try await client.call(.post, "/probe/write", token: token)
            #expect(writeStatus == .serviceUnavailable, "writes are never served from a stale entry")
            #expect(writeBody["code"] == "RBAC_UNAVAILABLE")

            let stranger = try Tokens.make(Tokens.claims(sub: "u-new"), signing: .rs256(key))
            let (noEntry, noEntryBody, _) = try await client.call(.get, "/probe/read", token: stranger)
            #expect(noEntry == .serviceUnavailable, "no usable entry: 503, never 403")
            #expect(noEntryBody["code"] == "RBAC_UNAVAILABLE")
        }
    }

    /// 50 requests on 50 connections miss the cache together while the host holds its answer: the
    /// host sees one call. (Without single flight every one of them reaches the host.)
    @Test func concurrentMissesShareOneHostCall() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"]))
            let token = try Self.token(key)
            // Warm the key set so every request below reaches RBAC at about the same time.
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "warm", permissions: ["LEADS_READ"]))
            _ = try await client.call(.get, "/probe/read", token: try Tokens.make(Tokens.claims(sub: "warm"), signing: .rs256(key)))
            let before = await host.state.rbacArrivals
            await host.state.holdRBAC()
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            let port = try #require(client.port)
            let responses = Task {
                try await withThrowingTaskGroup(of: UInt.self) { group in
                    for _ in 0..<50 {
                        group.addTask {
                            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/probe/read")
                            request.headers.add(name: "Authorization", value: "Bearer \(token)")
                            return try await http.execute(request, timeout: .seconds(30)).status.code
                        }
                    }
                    return try await group.reduce(into: [UInt]()) { $0.append($1) }
                }
            }
            // The first miss reaches the host; give the others time to pile up behind it (they would
            // arrive at the host within this window if they did not share the call).
            for _ in 0..<100 where await host.state.rbacArrivals - before < 1 { try await Task.sleep(for: .milliseconds(20)) }
            // Well inside the module's 2 s RBAC timeout, so the held answer is still an answer.
            try await Task.sleep(for: .milliseconds(700))
            let arrivedWhileHeld = await host.state.rbacArrivals - before
            await host.state.releaseRBAC()
            let statuses = try await responses.value
            try await http.shutdown()
            #expect(statuses.count == 50 && statuses.allSatisfy { $0 == 200 }, "\(statuses)")
            #expect(arrivedWhileHeld == 1, "one host call for 50 concurrent misses")
            #expect(await host.state.rbacArrivals - before == 1)
        }
    }

    @Test func unknownHostPermissionsAreIgnored() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(
                answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ", "ADMIN_EVERYTHING", "leads_write"]))
            let token = try Self.token(key)
            let status13 = try await client.call(.get, "/probe/read", token: token).0
            #expect(status13 == .ok)
            let (status, body, _) = try await client.call(.post, "/probe/write", token: token)
            #expect(status == .forbidden)
            #expect(body["code"] == "PERMISSION_DENIED")
            _ = try await client.call(.get, "/probe/read", token: try Tokens.make(Tokens.claims(lifetime: 60, issuedAgo: 600), signing: .rs256(key)))
            let metrics = try await client.execute(
                uri: "/metrics", method: .get, headers: [.authorization: "Bearer metrics-token-value"]
            ) { String(buffer: $0.body) }
            #expect(metrics.contains(#"fnhost_authz_denials_total{reason="missing_permission"} 1"#))
            #expect(metrics.contains(#"fnhost_auth_rejections_total{reason="expired"} 1"#))
        }
    }

    @Test func stepUpViaAmrOrAssuranceElseChallenge() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_DELETE"]))
            let (status, body, headers) = try await client.call(.delete, "/probe/delete", token: try Self.token(key))
            #expect(status == .forbidden)
            #expect(body["code"] == "STEP_UP_REQUIRED")
            #expect(headers[.wwwAuthenticate] == #"Bearer error="insufficient_user_authentication""#)

            let mfa = try Self.token(key, extra: ["amr": .array([.string("pwd"), .string("mfa")])])
            let status14 = try await client.call(.delete, "/probe/delete", token: mfa).0
            #expect(status14 == .ok)

            await host.state.set(answer: RBACAnswer(
                tenantID: "t-acme", userID: "u-mfa", permissions: ["LEADS_DELETE"], assurance: .init(mfa: true, level: nil)))
            let viaAssurance = try Tokens.make(Tokens.claims(sub: "u-mfa"), signing: .rs256(key))
            let status15 = try await client.call(.delete, "/probe/delete", token: viaAssurance).0
            #expect(status15 == .ok)

            await host.state.set(answer: RBACAnswer(
                tenantID: "t-acme", userID: "u-high", permissions: ["LEADS_DELETE"], assurance: .init(mfa: false, level: "high")))
            let viaLevel = try Tokens.make(Tokens.claims(sub: "u-high"), signing: .rs256(key))
            let status16 = try await client.call(.delete, "/probe/delete", token: viaLevel).0
            #expect(status16 == .ok)
        }
    }

    @Test func superAdminViaClaimOrGroupHoldsEveryPermission() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            let claim = try Self.token(key, extra: ["platform_super_admin": .bool(true)])
            let (status, body, _) = try await client.call(.post, "/probe/write", token: claim)
            #expect(status == .ok)
            #expect(body["super_admin"] == "1")
            let (stepUp, _, _) = try await client.call(.delete, "/probe/delete", token: claim)
            #expect(stepUp == .forbidden, "step-up still applies to a super admin")

            let tokenGroup = try Self.token(key, extra: ["groups": .array([.string("Leaderboard_SuperAdmins")])])
            let status17 = try await client.call(.post, "/probe/write", token: tokenGroup).0
            #expect(status17 == .ok)

            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-group", permissions: [], groups: ["Leaderboard_SuperAdmins"]))
            let rbacGroup = try Tokens.make(Tokens.claims(sub: "u-group"), signing: .rs256(key))
            let status18 = try await client.call(.post, "/probe/write", token: rbacGroup).0
            #expect(status18 == .ok)

            let plain = try Tokens.make(Tokens.claims(sub: "u-plain"), signing: .rs256(key))
            let status19 = try await client.call(.post, "/probe/write", token: plain).0
            #expect(status19 == .forbidden)
        }
    }

    @Test func stagingOverrideIsAuditedAndIgnoredInProduction() async throws {
        let key = try TestKey.make(kid: "k1")
        let database = try Backend.sqlite.databaseURL()
        try await IdentityHarness.run(
            extra: [
                "ENVIRONMENT": "staging", "STAGING_PLATFORM_ADMIN_EMAILS": "someone@else.example, ADA@acme.example",
                "DATABASE_URL": database,
            ]
        ) { host, client, _ in
            await host.state.set(keys: [key])
            let (status, body, _) = try await client.call(.post, "/probe/write", token: try Self.token(key))
            #expect(status == .ok)
            #expect(body["super_admin"] == "1")
        }
        try await withAuditStore(database) { store in
            let events = try await chain(store, "t-acme")
            let overrides = events.filter { $0.eventType == "PLATFORM_ADMIN_STAGING_OVERRIDE" }
            #expect(overrides.count == 1)
            #expect(overrides.first?.severity == "high")
            #expect(events.filter { $0.eventType == "LOGIN_VALIDATED" }.count == 1)
        }

        try await IdentityHarness.run(
            extra: ["ENVIRONMENT": "production", "STAGING_PLATFORM_ADMIN_EMAILS": "ada@acme.example"]
        ) { host, client, _ in
            await host.state.set(keys: [key])
            let status20 = try await client.call(.post, "/probe/write", token: try Self.token(key)).0
            #expect(status20 == .forbidden)
        }
    }
}

/// Every comparison of a value that came in a token or a host answer is on bytes, with ASCII-only folding where the
/// contract says case-insensitive (the Redis-writer and tenant-user rows of docs/security.md's table). KELVIN SIGN
/// (U+212A) is canonically equivalent to `K` and `lowercased()` folds it to `k`; a decomposed `ë` is canonically `ë`.
@Suite struct IdentifiersOnBytesTests {
    private static let kelvin = "\u{212A}"

    /// (1) The staging super-admin list.
    @Test func theStagingListMatchesOnlyTheSameBytesAfterASCIIFolding() async throws {
        let key = try TestKey.make(kid: "k1")
        let database = try Backend.sqlite.databaseURL()
        try await IdentityHarness.run(
            extra: [
                "ENVIRONMENT": "staging", "STAGING_PLATFORM_ADMIN_EMAILS": " kim@corp.example ,zo\u{00EB}@corp.example",
                "DATABASE_URL": database,
            ]
        ) { host, client, _ in
            await host.state.set(keys: [key])
            func status(_ email: String, sub: String) async throws -> Int {
                let token = try Tokens.make(Tokens.claims(sub: sub, email: email), signing: .rs256(key))
                return try await client.call(.post, "/probe/write", token: token).0.code
            }
            let s1 = try await status("\(Self.kelvin)im@corp.example", sub: "u-kelvin")

            #expect(s1 == 403, "KELVIN SIGN is not k")
            let s2 = try await status("zoe\u{0308}@corp.example", sub: "u-decomposed")

            #expect(s2 == 403, "a decomposed ë is another address")
            let s3 = try await status("KIM@Corp.Example", sub: "u-ascii")

            #expect(s3 == 200, "ASCII letters fold")
            let s4 = try await status("zo\u{00EB}@corp.example", sub: "u-precomposed")

            #expect(s4 == 200)
        }
    }

    /// (2) `groups` in the token and in the RBAC answer, against SUPER_ADMIN_GROUP.
    @Test func superAdminGroupsMatchOnBytes() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run(extra: ["SUPER_ADMIN_GROUP": "Kops"]) { host, client, _ in
            await host.state.set(keys: [key])
            let lookalike = try Tokens.make(
                Tokens.claims(sub: "u-token", extra: ["groups": .array([.string("\(Self.kelvin)ops")])]), signing: .rs256(key))
            let s5 = try await client.call(.post, "/probe/write", token: lookalike).0

            #expect(s5 == .forbidden)
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-answer", permissions: [], groups: ["\(Self.kelvin)ops"]))
            let answer = try Tokens.make(Tokens.claims(sub: "u-answer"), signing: .rs256(key))
            let s6 = try await client.call(.post, "/probe/write", token: answer).0

            #expect(s6 == .forbidden)
            let exact = try Tokens.make(Tokens.claims(sub: "u-exact", extra: ["groups": .array([.string("Kops")])]), signing: .rs256(key))
            let s7 = try await client.call(.post, "/probe/write", token: exact).0

            #expect(s7 == .ok)
        }
    }

    /// (3) `iss` and (4) `aud` against JWT_ISSUER and JWT_AUDIENCE.
    @Test func issuerAndAudienceMatchOnBytes() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run(extra: ["JWT_ISSUER": "https://Khost.test", "JWT_AUDIENCE": "Kmodule"]) { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"]))
            func status(iss: String, aud: JSONValue) async throws -> Int {
                let token = try Tokens.make(Tokens.claims(extra: ["iss": .string(iss), "aud": aud]), signing: .rs256(key))
                return try await client.call(.get, "/probe/read", token: token).0.code
            }
            let s8 = try await status(iss: "https://\(Self.kelvin)host.test", aud: .string("Kmodule"))

            #expect(s8 == 401)
            let s9 = try await status(iss: "https://Khost.test", aud: .string("\(Self.kelvin)module"))

            #expect(s9 == 401)
            let s10 = try await status(iss: "https://Khost.test", aud: .array([.string("\(Self.kelvin)module")]))

            #expect(s10 == 401)
            let s11 = try await status(iss: "https://Khost.test", aud: .array([.string("other"), .string("Kmodule")]))

            #expect(s11 == 200)
        }
    }

    /// (5) `amr` and (6) the answer's assurance level, for step-up; (7) host permission names.
    @Test func stepUpAndPermissionNamesMatchOnBytes() {
        func identity(amr: [String]) -> Identity {
            Identity(
                subject: "u", email: "u@x.example", tenantID: "t", amr: amr, groups: [], platformSuperAdminClaim: false,
                expiresAt: 1_000, issuedAt: 900, jti: nil, tokenHash: "h")
        }
        let none = RBACAnswer(tenantID: "t", userID: "u", permissions: [])
        #expect(Authorizer.stepUpSatisfied(identity(amr: ["pwd", "mfa"]), answer: none))
        #expect(!Authorizer.stepUpSatisfied(identity(amr: ["MFA", "m\u{0066}a "]), answer: none))
        #expect(ModulePermission(named: "LEADS_READ") == .leadsRead)
        #expect(ModulePermission(named: "leads_read") == nil)
        #expect(ModulePermission(named: "LEADS_READ\u{0000}") == nil)
        #expect(StagingAdminEmails(["Kim@X"]).contains("kim@x"))
        #expect(!StagingAdminEmails(["kim@x"]).contains("\(Self.kelvin)im@x"))
        #expect(!StagingAdminEmails(["  ", ""]).contains(""))
    }
}

/// JSON log lines captured to a file.
final class LogCapture: Sendable {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-logs-\(UUID().uuidString)").path
    let sink: LogSink

    init() {
        sink = LogSink(fileDescriptor: open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600))
    }

    var logger: Logger {
        let sink = sink
        return Logger(label: "test") { label in JSONLogHandler(label: label, sink: sink, level: .debug) }
    }

    var lines: [[String: Any]] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }
}

@Suite struct VerifiedTokensTests {
    private let identity = Identity(
        subject: "u", email: "u@x.example", tenantID: "t", amr: [], groups: [], platformSuperAdminClaim: false,
        expiresAt: 1_000, issuedAt: 900, jti: nil, tokenHash: "h")

    @Test func entriesExpireAtTheEarlierOfExpAndSixtySeconds() {
        let cache = VerifiedTokens()
        cache.store("tok", identity, now: 900, generation: 1)
        #expect(cache.lookup("tok", now: 950, generation: 1) == identity)
        #expect(cache.lookup("tok", now: 1_000, generation: 1) == nil, "never past exp")
        cache.store("tok", identity, now: 100, generation: 1)
        #expect(cache.lookup("tok", now: 150, generation: 1) == identity)
        #expect(cache.lookup("tok", now: 161, generation: 1) == nil, "re-verified after 60 s")
    }

    @Test func aNewKeySetInvalidatesEntries() {
        let cache = VerifiedTokens()
        cache.store("tok", identity, now: 900, generation: 1)
        #expect(cache.lookup("tok", now: 901, generation: 2) == nil)
        #expect(cache.lookup("tok", now: 901, generation: 1) == nil, "the stale entry was dropped")
        #expect(cache.lookup("other", now: 901, generation: 1) == nil)
    }
}

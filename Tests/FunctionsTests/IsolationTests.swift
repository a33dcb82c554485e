import Foundation
import TestSupport
@testable import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Prometheus
import Testing

@testable import Functions

/// Pairs of ids that some naive rule (String equality, a separator, a glob, a decoder, a
/// case or width fold) would take for one; docs/security.md says they are two.
enum HostileIDs {
    /// (a, b): distinct byte strings that collide under at least one naive rule.
    static let pairs: [(String, String)] = [
        ("caf\u{E9}", "cafe\u{301}"),  // NFC / NFD: equal as Swift Strings
        ("t\u{212A}", "tK"),  // KELVIN SIGN is canonically K
        ("a\u{301}\u{316}", "a\u{316}\u{301}"),  // combining marks in either order: canonically equal
        ("t:a", "t"),  // a separator inside an id
        ("t*", "tx"),  // a glob character (SCAN MATCH)
        ("t%3Aa", "t:a"),  // an escape of the separator
        ("t+1", "t 1"),  // `+` read as a space by a form decoder
        ("\u{430}dmin", "admin"),  // Cyrillic а
        ("T", "t"),  // case
        ("t ", "t"),  // trailing space
        ("\u{FF54}", "t"),  // fullwidth t (compatibility equivalent)
        (String(repeating: "\u{E9}", count: 64), String(repeating: "\u{E9}", count: 63) + "e\u{301}"),  // 128 bytes vs 129: only one is an id
    ]
}

@Suite struct IdentifierTests {
    @Test func identifiersCompareAndHashOnBytes() {
        for (a, b) in HostileIDs.pairs {
            let left = TenantID(trusted: a)
            let right = TenantID(trusted: b)
            #expect(left != right, "\(a.debugDescription) vs \(b.debugDescription)")
            #expect(Set([left, right]).count == 2)
            #expect((left < right) != (right < left))
            var map: [TenantID: Int] = [:]
            map[left] = 1
            map[right] = 2
            #expect(map.count == 2)
        }
        // The precondition of the whole suite: Swift Strings do merge some of them.
        #expect("caf\u{E9}" == "cafe\u{301}")
        #expect("t\u{212A}" == "tK")
    }

    @Test func identifiersAreValidatedOnceAsSpecified() {
        for bad in ["", "a\u{0}b", "a\nb", "a\u{7F}", "a\u{85}", "a\u{9F}", String(repeating: "x", count: 129), String(repeating: "\u{E9}", count: 65)] {
            #expect(TenantID(validating: bad) == nil, "\(bad.debugDescription)")
            #expect(UserID(validating: bad) == nil, "\(bad.debugDescription)")
        }
        #expect(TenantID(validating: "platform") == nil, "reserved for the platform chain")
        #expect(TenantID(validating: "Platform") != nil, "reserved on bytes, not case-folded")
        #expect(UserID(validating: "platform") != nil)
        #expect(TenantID(validating: String(repeating: "\u{E9}", count: 64)) != nil, "128 bytes")
        #expect(ChainID(stored: "platform") == .platform)
        #expect(ChainID(stored: "caf\u{E9}") != ChainID(stored: "cafe\u{301}"))
    }

    /// Property: no two distinct tuples of parts ever encode to one key; keys are ASCII and decode back.
    @Test func keyEncoderIsInjective() {
        let alphabet = [":", "%", "*", "?", "[", "]", "\\", "a", "b", "\u{E9}", "e\u{301}", "\u{212A}", "K", " ", "+", "/", "3A", "%3A", "\u{0}"]
        var generator = SystemRandomNumberGenerator()
        func part() -> String { (0..<Int.random(in: 0...4, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined() }
        var seen: [String: [[UInt8]]] = [:]
        for _ in 0..<20_000 {
            let parts = (0..<Int.random(in: 1...3, using: &generator)).map { _ in Array(part().utf8) }
            let key = CacheKey.make("ns", parts: parts)
            #expect(key.utf8.allSatisfy { $0 < 0x80 && $0 != UInt8(ascii: "*") && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "[") })
            if let earlier = seen[key] {
                #expect(earlier == parts, "\(key) encodes two tuples")
            }
            seen[key] = parts
            let decoded = key.split(separator: ":", omittingEmptySubsequences: false).dropFirst().map { CacheKey.decode($0) }
            #expect(decoded == parts.map { Optional($0) })
        }
        // The named collision of the issue, and the tenant prefix used by purges.
        let first = RBACService.key(tenant: TenantID(trusted: "t:a"), user: UserID(trusted: "b"))
        let second = RBACService.key(tenant: TenantID(trusted: "t"), user: UserID(trusted: "a:b"))
        #expect(first != second)
        #expect(first.hasPrefix(RBACService.tenantPrefix(TenantID(trusted: "t:a"))))
        #expect(!second.hasPrefix(RBACService.tenantPrefix(TenantID(trusted: "t:a"))))
        #expect(!first.hasPrefix(RBACService.tenantPrefix(TenantID(trusted: "t"))))
        #expect(CacheKey.decode("a%3a") == nil && CacheKey.decode("%41") == nil && CacheKey.decode("a:b") == nil, "only encode's own output decodes")
    }

    @Test func csvDecidesOnBytesAndScalars() {
        // "\r\n" is one Character: a check on Characters misses both CR and LF.
        #expect(Lead.csvCell("hi\r\n=1+2") == "\"hi\r\n=1+2\"")
        #expect(Lead.csvCell("=\u{301}1+2") == "'=\u{301}1+2", "the first scalar is '=' even when a mark follows")
        #expect(Lead.csvCell("-\u{301}") == "'-\u{301}")
        #expect(Lead.csvCell("a\"b") == "\"a\"\"b\"")
        #expect(Lead.csvCell("=x,y") == "\"'=x,y\"")
        #expect(Lead.csvCell("plain \u{E9}") == "plain \u{E9}")
        #expect(Lead.csvCell("\u{FF1D}1") == "\u{FF1D}1", "a fullwidth = is not a formula to a spreadsheet")
    }

    @Test func numbersFromOutsideNeverTrap() throws {
        #expect(JWKSSource.maxAge("max-age=10000000000000000") == .seconds(86_400))
        #expect(JWKSSource.maxAge("public, max-age=99999999999999999999999999") == .seconds(86_400))
        #expect(JWKSSource.maxAge("max-age=5") == .seconds(60))
        #expect(JWKSSource.maxAge("max-age=-5") == .seconds(600))
        #expect(RedisCache.milliseconds(.seconds(Int64.max / 4)) == 30 * 86_400 * 1000)
        #expect(RedisCache.milliseconds(.seconds(-5)) == 1)
        for hostile in ["nan", "NaN", "inf", "-inf", "1e400", "-1", "1.5", "99999999999999999999", ""] {
            #expect(Bounded.retryAfterSeconds(hostile) == nil, "\(hostile)")
        }
        #expect(Bounded.retryAfterSeconds("120", limit: 10) == 10)
        #expect(Bounded.duration(seconds: .nan, in: 0.1...10) == .milliseconds(100))
        #expect(Bounded.duration(seconds: .infinity, in: 0.1...10) == .milliseconds(100))
        // Managed-identity token answers with hostile expiry figures: refused or clamped, never a trap.
        for expiry in [#""nan""#, #""inf""#, #""1e400""#, #""-inf""#] {
            #expect(throws: SecretsError.self) {
                try AccessToken.parse(ByteBuffer(string: #"{"access_token":"x","expires_on":\#(expiry)}"#), source: "test")
            }
        }
        let clamped = try AccessToken.parse(ByteBuffer(string: #"{"access_token":"x","expires_on":1e300}"#), source: "test")
        #expect(clamped.expiresOn.timeIntervalSinceNow <= 86_401)
        let answer = try JSONDecoder().decode(RBACAnswer.self, from: Data(#"{"tenant_id":"t","user_id":"u","ttl_seconds":1e300}"#.utf8))
        #expect(answer.ttlSeconds == RBACAnswer.maxTTLSeconds)
        let negative = try JSONDecoder().decode(RBACAnswer.self, from: Data(#"{"tenant_id":"t","user_id":"u","ttl_seconds":-1e300}"#.utf8))
        #expect(negative.ttlSeconds == 0)
    }

    @Test(arguments: Backend.allCases)
    func verifierTreatsCanonicallyEquivalentChainsAsTwo(backend: Backend) async throws {
        try await withAuditStore(try backend.databaseURL()) { store in
            let run = String(UUID().uuidString.prefix(6))
            let nfc = TenantID(trusted: run + "caf\u{E9}")
            let nfd = TenantID(trusted: run + "cafe\u{301}")
            for tenant in [nfc, nfc, nfd] {
                try await store.append(AuditRecord(tenantID: tenant, actorSub: nil, actorEmail: nil, eventType: "LEAD_CREATED", severity: .info, details: [:]))
            }
            let verifier = AuditChainVerifier(store: store)
            let nfcReport = try await verifier.verify(tenant: nfc.text, full: true)
            let nfdReport = try await verifier.verify(tenant: nfd.text, full: true)
            #expect(nfcReport.events == 2 && nfdReport.events == 1, "two chains, verified apart")
            let checkpoints = try await store.checkpoints()
            #expect(checkpoints[.tenant(nfc)]?.seq == 2 && checkpoints[.tenant(nfd)]?.seq == 1)
        }
    }

    @Test func rbacQueryEncodesIdsStrictly() {
        let query = HostRBACClient.query(tenant: TenantID(trusted: "t+1&x=y"), user: UserID(trusted: "a b%2B\u{E9}"))
        #expect(query == "?tenant_id=t%2B1%26x%3Dy&user_id=a%20b%252B%C3%A9")
    }

    @Test func signedCacheIgnoresWhatItDidNotWrite() async throws {
        let base = InProcessCache()
        let registry = PrometheusCollectorRegistry()
        let cache = SignedCache(
            base: base, signingKey: Array("k".utf8) + SignedCache.generatedKey(), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() },
            metrics: PrometheusMetricsFactory(registry: registry))
        try await cache.set("rbac:t:u", Array("answer".utf8), ttl: .seconds(60))
        #expect(try await cache.get("rbac:t:u") == Array("answer".utf8))
        // Planted by anyone who can write to Redis: ignored.
        try await base.set("rbac:t:evil", Array(#"{"answer":{"groups":["Leaderboard_SuperAdmins"]}}"#.utf8), ttl: .seconds(60))
        #expect(try await cache.get("rbac:t:evil") == nil)
        // A genuine entry moved under another key: ignored (the key is inside the MAC).
        try await base.set("rbac:t:other", try #require(try await base.get("rbac:t:u")), ttl: .seconds(60))
        #expect(try await cache.get("rbac:t:other") == nil)
        // One flipped byte: ignored.
        var tampered = try #require(try await base.get("rbac:t:u"))
        tampered[tampered.count - 1] ^= 1
        try await base.set("rbac:t:u", tampered, ttl: .seconds(60))
        #expect(try await cache.get("rbac:t:u") == nil)
        // Another process's key cannot read ours.
        let stranger = SignedCache(
            base: base, signingKey: SignedCache.generatedKey(), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() },
            metrics: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
        try await cache.set("jwks:x", [1, 2, 3], ttl: .seconds(60))
        #expect(try await stranger.get("jwks:x") == nil)
        // A planted dedupe marker under the plain name does not suppress a claim.
        try await base.set("webhook-seen:abc", [1], ttl: .seconds(60))
        #expect(try await cache.setIfAbsent("webhook-seen:abc", [1], ttl: .seconds(60)))
        #expect(!(try await cache.setIfAbsent("webhook-seen:abc", [1], ttl: .seconds(60))))
        var text: [UInt8] = []
        registry.emit(into: &text)
        #expect(String(decoding: text, as: UTF8.self).contains("fnhost_cache_entries_rejected_total 3"))
    }
}

@Suite struct IdentifierTypeDisciplineTests {
    /// Ids travel as `TenantID`/`UserID`/`ChainID`. A declaration of an id as `String` is allowed only
    /// where the text is a wire or storage form (claims and answers as received, rows as stored, CLI
    /// options, SQL bindings); anywhere else this test fails, so a `String` id cannot creep back.
    @Test func idsAreNotDeclaredAsStrings() throws {
        let allowed: [String: Int] = [
            "Store/Postgres/PostgresLeads.swift": 6,  // prepared-statement bindings
            "Auth/HostClaims.swift": 1,  // the claim as received, validated into a TenantID
            "DevHost/DevHostStore.swift": 3, "DevHost/DevHostCommands.swift": 3, "Main/FnHost.swift": 3,  // CLI text
            "Audit/AuditChainVerifier.swift": 3,  // the --tenant option and the stored tenant_id, turned into ChainIDs
            "Audit/AuditEvent.swift": 2,  // the stored row, hashed as text
            "Authorization/RBAC.swift": 4,  // the host's answer as received, compared on bytes (isFor)
        ]
        let root = Repository.root.appendingPathComponent("Functions")
        let pattern = try Regex(#"\b(tenant|user|tenantID|userID|subject|actorSub)\s*:\s*String\b"#)
        var found: [String: Int] = [:]
        let files = FileManager.default.enumerator(atPath: root.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        #expect(files.count > 20)
        for file in files where !file.hasPrefix("Identity/") {
            let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
            let count = text.matches(of: pattern).count
            if count > 0 { found[file] = count }
        }
        #expect(found == allowed, "an id declared as String outside the allowed wire forms")
    }
}

@Suite struct JSONReaderTests {
    @Test func readsWhatFoundationReads() throws {
        let samples = [
            #"{"a":[1,2.5,-3e2,true,false,null,"x\n\u00e9\ud83d\ude00"],"b":{}}"#, "[]", "0", #""s""#, " [ 1 , { \"k\" : [ ] } ] ",
        ]
        for sample in samples {
            let ours = try JSONReader.parse(Array(sample.utf8))
            let theirs = try JSONDecoder().decode(JSONValue.self, from: Data(sample.utf8))
            #expect(ours == theirs, "\(sample)")
        }
    }

    @Test func refusesWhatIsNotJSON() {
        for bad in ["", "[", "{\"a\":}", "[1,]", "01", "1.", "-", "tru", "\"\u{1}\"", "\"\\x\"", "\"\\ud800\"", "[1] 2", "{\"a\":1,\"a\":2}", "1e400", "NaN"] {
            #expect(throws: JSONReadError.self, "\(bad.debugDescription)") { try JSONReader.parse(Array(bad.utf8)) }
        }
        #expect(throws: JSONReadError.self) { try JSONReader.parse([0x22, 0xFF, 0x22]) }
    }

    @Test func nulIsRefusedNamingTheField() {
        do {
            _ = try JSONReader.parse(Array(#"{"notes":"a\u0000b"}"#.utf8))
            Issue.record("accepted a NUL")
        } catch {
            #expect(error.reason == .nul(field: "notes"))
            #expect(error.description == "field 'notes' must not contain a NUL character")
        }
        #expect(throws: JSONReadError.self) { try JSONReader.parse(Array(#"{"vars":{"name":"a\u0000"}}"#.utf8)) }
    }

    /// Hostile shapes end at the depth limit after one pass: the input is not re-read per level.
    @Test func depthIsLimitedOnTheWayDown() {
        for shape in [String(repeating: "[", count: 200_000), String(repeating: #"{"a":"#, count: 100_000)] {
            do {
                _ = try JSONReader.parse(Array(shape.utf8))
                Issue.record("accepted \(shape.prefix(8))…")
            } catch {
                #expect(error.reason == .tooDeep)
                #expect(error.offset < 1_000, "stopped where the limit was crossed")
            }
        }
        let deepButAllowed = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? JSONReader.parse(Array(deepButAllowed.utf8))) != nil)
    }
}

/// The real module over HTTP (in process, real sockets) with ids that collide under naive rules.
@Suite(.serialized) struct HostileIdentityTests {
    static let everything = ["LEADS_READ", "LEADS_WRITE", "LEADS_DELETE", "EXPORTS_EXECUTE", "AUDIT_READ", "EMAIL_SEND"]

    /// Property over every pair and both backends: A and B see nothing of each other, in both
    /// directions — leads, lead ids, exports, audit, permissions and rate-limit budgets.
    @Test(arguments: Backend.allCases)
    func collidingTenantsNeverCross(backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let run = String(UUID().uuidString.prefix(4))
            for (index, (a, b)) in HostileIDs.pairs.enumerated() {
                // A fresh prefix per pair: two pairs may share an id ("t:a").
                let tenantA = "\(run)\(index)-" + a
                let tenantB = "\(run)\(index)-" + b
                guard TenantID(validating: tenantA) != nil, TenantID(validating: tenantB) != nil else {
                    // The over-long one is no tenant: its token is refused outright.
                    let long = TenantID(validating: tenantA) == nil ? tenantA : tenantB
                    let token = try LeadsHarness.token(key, tenant: long, user: "u")
                    #expect(try await client.send(.get, "/api/leads", token: token).status == .unauthorized)
                    continue
                }
                await LeadsHarness.grant(host, tenant: tenantA, user: "u", Self.everything, mfa: true)
                await LeadsHarness.grant(host, tenant: tenantB, user: "u", ["LEADS_READ", "AUDIT_READ"], mfa: true)
                let tokenA = try LeadsHarness.token(key, tenant: tenantA, user: "u")
                let tokenB = try LeadsHarness.token(key, tenant: tenantB, user: "u")
                let created = try await client.send(.post, "/api/leads", token: tokenA, json: #"{"name":"A lead","email":"a@a.example"}"#)
                #expect(created.status == .created, "\(a.debugDescription)")
                let leadA = try #require(created.json["id"] as? String)

                // B holds only read permissions: A's grants never reach B (L1, L2, key encoding).
                #expect(try await client.send(.post, "/api/leads", token: tokenB, json: #"{"name":"B","email":"b@b.example"}"#).status == .forbidden)
                let listB = try await client.send(.get, "/api/leads", token: tokenB)
                #expect(listB.status == .ok)
                #expect((listB.json["items"] as? [Any])?.isEmpty == true, "B sees none of A's leads (\(a.debugDescription))")
                #expect(try await client.send(.get, "/api/leads/\(leadA)", token: tokenB).status == .notFound)
                let auditB = try await client.send(.get, "/api/audit", token: tokenB)
                #expect(!auditB.body.contains(leadA), "B's chain holds none of A's events")
                let crossAudit = try await client.send(.get, "/api/audit?tenant_id=\(Self.percent(tenantA))", token: tokenB)
                #expect(crossAudit.status == .forbidden, "A's chain through tenant_id is another tenant's")

                // The other direction: A sees nothing of B's (a writer of B's tenant makes a lead).
                await LeadsHarness.grant(host, tenant: tenantB, user: "w", Self.everything, mfa: true)
                let writerB = try LeadsHarness.token(key, tenant: tenantB, user: "w")
                let createdB = try await client.send(.post, "/api/leads", token: writerB, json: #"{"name":"B lead","email":"b@b.example"}"#)
                #expect(createdB.status == .created)
                let leadB = try #require(createdB.json["id"] as? String)
                #expect(try await client.send(.get, "/api/leads/\(leadB)", token: tokenA).status == .notFound)
                let listA = try await client.send(.get, "/api/leads", token: tokenA)
                #expect((listA.json["items"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [leadA])
                let export = try await client.send(.post, "/api/exports/leads", token: tokenA)
                #expect(export.status == .ok)
                #expect(export.body.contains(leadA) && !export.body.contains(leadB), "A's export holds A's lead only")
                let crossB = try await client.send(.get, "/api/audit?tenant_id=\(Self.percent(tenantB))", token: tokenA)
                #expect(crossB.status == .forbidden)
                let auditA = try await client.send(.get, "/api/audit", token: tokenA)
                #expect(auditA.body.contains(leadA) && !auditA.body.contains(leadB))
            }
        }
    }

    @Test func rateLimitBudgetsAreSeparate() async throws {
        try await IdentityHarness.run(extra: ["RATE_LIMIT_PER_SECOND": "0.001", "RATE_LIMIT_BURST": "2"]) { host, client, _ in
            let key = try TestKey.make(kid: "k1")
            await host.state.set(keys: [key])
            for (index, pair) in HostileIDs.pairs.prefix(6).enumerated() {
                let (a, b) = ("\(index)-" + pair.0, "\(index)-" + pair.1)
                for (tenant, user) in [(a, "u"), (b, "u"), ("t-rl", a), ("t-rl", b)] {
                    await host.state.set(answer: RBACAnswer(tenantID: tenant, userID: user, permissions: ["LEADS_READ"]))
                }
                let spend = try Tokens.make(Tokens.claims(tenant: a, sub: "u"), signing: .rs256(key))
                for _ in 0..<2 { #expect(try await client.call(.get, "/probe/read", token: spend).0 == .ok) }
                #expect(try await client.call(.get, "/probe/read", token: spend).0 == .tooManyRequests)
                let other = try Tokens.make(Tokens.claims(tenant: b, sub: "u"), signing: .rs256(key))
                #expect(try await client.call(.get, "/probe/read", token: other).0 == .ok, "\(b.debugDescription) has its own budget")
                let userA = try Tokens.make(Tokens.claims(tenant: "t-rl", sub: a), signing: .rs256(key))
                for _ in 0..<3 { _ = try await client.call(.get, "/probe/read", token: userA) }
                let userB = try Tokens.make(Tokens.claims(tenant: "t-rl", sub: b), signing: .rs256(key))
                #expect(try await client.call(.get, "/probe/read", token: userB).0 == .ok, "user \(b.debugDescription) has its own budget")
            }
        }
    }

    static func percent(_ text: String) -> String { CacheKey.encode(text.utf8) }

    @Test func separatorsInIdsDoNotShareAnRBACAnswer() async throws {
        try await IdentityHarness.run { host, client, _ in
            let key = try TestKey.make(kid: "k1")
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t:a", userID: "b", permissions: ["LEADS_READ"], ttlSeconds: 300))
            let granted = try Tokens.make(Tokens.claims(tenant: "t:a", sub: "b"), signing: .rs256(key))
            let other = try Tokens.make(Tokens.claims(tenant: "t", sub: "a:b"), signing: .rs256(key))
            #expect(try await client.call(.get, "/probe/read", token: granted).0 == .ok)
            #expect(try await client.call(.get, "/probe/read", token: other).0 == .forbidden)
            // Canonically equivalent tenants, the same user: two answers, never one.
            await host.state.set(answer: RBACAnswer(tenantID: "caf\u{E9}", userID: "u", permissions: ["LEADS_READ"], groups: ["Leaderboard_SuperAdmins"]))
            let nfc = try Tokens.make(Tokens.claims(tenant: "caf\u{E9}", sub: "u"), signing: .rs256(key))
            let nfd = try Tokens.make(Tokens.claims(tenant: "cafe\u{301}", sub: "u"), signing: .rs256(key))
            let asNFC = try await client.call(.get, "/probe/read", token: nfc)
            #expect(asNFC.0 == .ok && asNFC.1["super_admin"] == "1")
            #expect(try await client.call(.get, "/probe/read", token: nfd).0 == .forbidden)
            // `+` reaches the host as %2B, so no form decoder reads a space.
            await host.state.set(answer: RBACAnswer(tenantID: "t+1", userID: "u+1", permissions: ["LEADS_READ"]))
            let plus = try Tokens.make(Tokens.claims(tenant: "t+1", sub: "u+1"), signing: .rs256(key))
            #expect(try await client.call(.get, "/probe/read", token: plus).0 == .ok)
            #expect(await host.state.rbacQueries.contains("tenant_id=t%2B1&user_id=u%2B1"))
        }
    }

    @Test func reservedAndMalformedTenantsAreRefused() async throws {
        try await IdentityHarness.run { host, client, _ in
            let key = try TestKey.make(kid: "k1")
            await host.state.set(keys: [key])
            for tenant in ["platform", "t\u{0}x", "t\u{85}", String(repeating: "x", count: 129)] {
                let token = try Tokens.make(Tokens.claims(tenant: tenant, sub: "u"), signing: .rs256(key))
                #expect(try await client.call(.get, "/probe/read", token: token).0 == .unauthorized, "\(tenant.debugDescription)")
            }
            #expect(await host.state.rbacFetches == 0, "refused before anything is asked of the host")
        }
    }

    @Test func hostDenialIsAnAnswerAndDropsTheEntry() async throws {
        try await IdentityHarness.run { host, client, _ in
            let key = try TestKey.make(kid: "k1")
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-d", userID: "gone", permissions: ["LEADS_READ"], ttlSeconds: 1))
            let token = try Tokens.make(Tokens.claims(tenant: "t-d", sub: "gone"), signing: .rs256(key))
            #expect(try await client.call(.get, "/probe/read", token: token).0 == .ok)
            try await Task.sleep(for: .milliseconds(1_200))  // the entry is stale but could serve reads in an outage
            await host.state.set(rbacStatus: 404, tenant: "t-d", user: "gone")
            let removed = try await client.call(.get, "/probe/read", token: token)
            #expect(removed.0 == .forbidden && removed.1["code"] == "PERMISSION_DENIED", "a removed user is denied, not degraded")
            // Not even a super-admin claim in a still-valid token overrides the host's denial.
            let claim = try Tokens.make(Tokens.claims(tenant: "t-d", sub: "gone", extra: ["platform_super_admin": .bool(true)]), signing: .rs256(key))
            #expect(try await client.call(.get, "/probe/read", token: claim).0 == .forbidden)
            // The entry is gone: an outage now cannot bring the old permissions back.
            await host.state.set(rbacStatus: nil, tenant: "t-d", user: "gone")
            await host.state.set(rbacFailing: true)
            #expect(try await client.call(.get, "/probe/read", token: token).0 == .serviceUnavailable)
            // 401 (our key refused) is a misconfiguration: 503 even with a stale entry for a read.
            await host.state.set(rbacFailing: false)
            await host.state.set(answer: RBACAnswer(tenantID: "t-d", userID: "k", permissions: ["LEADS_READ"], ttlSeconds: 1))
            let other = try Tokens.make(Tokens.claims(tenant: "t-d", sub: "k"), signing: .rs256(key))
            #expect(try await client.call(.get, "/probe/read", token: other).0 == .ok)
            try await Task.sleep(for: .milliseconds(1_200))
            await host.state.set(rbacStatus: 401, tenant: "t-d", user: "k")
            let misconfigured = try await client.call(.get, "/probe/read", token: other)
            #expect(misconfigured.0 == .serviceUnavailable && misconfigured.1["code"] == "RBAC_UNAVAILABLE")
            // An answer about someone else is a denial too.
            await host.state.set(rbacStatus: nil, tenant: "t-d", user: "k")
            await host.state.set(answer: RBACAnswer(tenantID: "t-d", userID: "someone-else", permissions: ["LEADS_READ"]), for: "t-d", user: "k")
            #expect(try await client.call(.get, "/probe/read", token: other).0 == .forbidden)
        }
    }

    @Test func aKidTheHostDroppedStopsVerifyingAtOnce() async throws {
        try await IdentityHarness.run { host, client, _ in
            let old = try TestKey.make(kid: "old")
            let new = try TestKey.make(kid: "new")
            await host.state.set(keys: [old])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ"]))
            let oldToken = try Tokens.make(Tokens.claims(), signing: .rs256(old))
            #expect(try await client.call(.get, "/probe/read", token: oldToken).0 == .ok)
            #expect(try await client.call(.get, "/probe/read", token: oldToken).0 == .ok, "served from the verified-token cache")
            // The host rotates and drops the old key; the first token with the new kid refreshes the set.
            await host.state.set(keys: [new])
            #expect(try await client.call(.get, "/probe/read", token: try Tokens.make(Tokens.claims(), signing: .rs256(new))).0 == .ok)
            #expect(try await client.call(.get, "/probe/read", token: oldToken).0 == .unauthorized, "the dropped kid no longer verifies")
        }
    }

    @Test func aJWKSWithoutUsableKeysIsUnavailableNotAnAnswer() async throws {
        try await IdentityHarness.run { host, client, _ in
            let weak = try TestKey.make(kid: "weak", bits: 1024)
            await host.state.set(keys: [weak])  // nothing usable for RS256: the set is refused as a whole
            let token = try Tokens.make(Tokens.claims(), signing: .rs256(weak))
            let reply = try await client.call(.get, "/probe/read", token: token)
            #expect(reply.0 == .serviceUnavailable, "no keys is an outage of the host, never an acceptance")
        }
    }

    @Test func aPurgeIsNeverUndoneByAFetchInFlight() async throws {
        try await IdentityHarness.run { host, client, box in
            let key = try TestKey.make(kid: "k1")
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-p", userID: "u", permissions: ["LEADS_READ"], ttlSeconds: 300))
            await host.state.set(rbacDelay: .milliseconds(600))
            let token = try Tokens.make(Tokens.claims(tenant: "t-p", sub: "u"), signing: .rs256(key))
            let inFlight = Task { try await client.call(.get, "/probe/read", token: token).0 }
            // The purge arrives while the answer is on its way (the host holds it 600 ms).
            let rbac = try #require(box.setup?.rbac)
            while await host.state.rbacArrivals == 0 { try await Task.sleep(for: .milliseconds(10)) }
            _ = try await rbac.purge(tenant: "t-p", user: "u")
            #expect(try await inFlight.value == .ok, "the request that asked before the purge gets its answer")
            await host.state.set(rbacDelay: .zero)
            let fetches = await host.state.rbacFetches
            #expect(try await client.call(.get, "/probe/read", token: token).0 == .ok)
            #expect(await host.state.rbacFetches == fetches + 1, "the purged answer was not stored: the next request asks the host")
        }
    }

    @Test func repeatedParametersAndNULAreRefused() async throws {
        for backend in Backend.allCases {
            try await LeadsHarness.run(backend) { host, key, client in
                let tenant = "t-nul-\(UUID().uuidString.prefix(6))"
                await LeadsHarness.grant(host, tenant: tenant, user: "u", Self.everything, mfa: true)
                let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
                for uri in ["/api/leads?limit=2&limit=500", "/api/leads?limit=500&limit=2", "/api/audit?tenant_id=x&tenant_id=\(tenant)"] {
                    let reply = try await client.send(.get, uri, token: token)
                    #expect(reply.status == .badRequest && reply.code == "VALIDATION_FAILED", "\(uri)")
                }
                let nul = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"a\u0000b","email":"a@b.example"}"#)
                #expect(nul.status == .badRequest && nul.message.contains("name"), "\(backend)")
                let notes = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"n","email":"a@b.example","notes":"x\u0000"}"#)
                #expect(notes.status == .badRequest && notes.message.contains("notes"))
                let email = try await client.send(
                    .post, "/api/emails", token: token, json: #"{"template":"welcome","to":"a@b.example","vars":{"name":"\u0000"}}"#)
                #expect(email.status == .badRequest && email.code == "VALIDATION_FAILED")
                let newline = try await client.send(.post, "/api/emails", token: token, json: #"{"template":"welcome\n","to":"a@b.example"}"#)
                #expect(newline.status == .badRequest, "no trailing newline in a template name")
                #expect((try await client.send(.get, "/api/leads", token: token).json["items"] as? [Any])?.isEmpty == true, "nothing was written")
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func exportCellsCannotStartRowsOrFormulas(backend: Backend) async throws {
        try await LeadsHarness.run(backend) { host, key, client in
            let tenant = "t-csv-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", Self.everything, mfa: true)
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            let created = try await client.send(
                .post, "/api/leads", token: token, json: #"{"name":"=\u0301cmd","email":"a@b.example","notes":"hi\r\n=1+2"}"#)
            #expect(created.status == .created)
            let export = try await client.send(.post, "/api/exports/leads", token: token)
            #expect(export.body.contains("\"hi\r\n=1+2\""), "the CRLF is inside a quoted cell")
            #expect(export.body.contains(",'=\u{301}cmd,"), "the formula is defused on its first scalar")
        }
    }
}

@Suite struct WireValueTests {
    @Test func jsonValuesEncodeAndExposeTheirCases() throws {
        let value: JSONValue = .object([
            "i": .number(3), "f": .number(1.5), "s": .string("x"), "b": .bool(true), "n": .null, "a": .array([.number(1)]),
            "o": .object(["k": .string("v")]),
        ])
        let encoded = try JSONEncoder().encode(value)
        #expect(try JSONReader.parse(Array(encoded)) == value, "Foundation's encoding reads back the same")
        #expect(value["s"]?.stringValue == "x" && value["b"]?.boolValue == true)
        #expect(value["a"]?.arrayValue?.count == 1 && value["o"]?.objectValue?["k"]?.stringValue == "v")
        #expect(value["i"]?.stringValue == nil && value["s"]?.boolValue == nil && value["s"]?.arrayValue == nil && value["s"]?.objectValue == nil)
        #expect(JSONValue.string("x")["k"] == nil)
    }

    @Test func guidRouteConstraintMatchesOnlyUUIDs() throws {
        let template = try RouteTemplate(parsing: "api/things/{id:guid}")
        #expect(template.match(["api", "things", "0f8fad5b-d9cb-469f-a165-70867728950e"][...]) != nil)
        for bad in ["0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5bxd9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950g"] {
            #expect(template.match(["api", "things", Substring(bad)][...]) == nil, "\(bad)")
        }
    }
}

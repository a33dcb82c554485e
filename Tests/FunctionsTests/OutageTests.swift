import Foundation
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import TestSupport
import Testing

@testable import Functions

/// The host platform failing the two ways networks fail: nothing listening (connection refused)
/// and a listener that accepts and never answers (past every deadline). Unknown → deny, dependency
/// down → 503, never an allow and never a hang.
@Suite(.serialized) struct HostFaultTests {
    enum Fault: String, CaseIterable, CustomTestStringConvertible {
        case refused, hangs
        var testDescription: String { rawValue }
    }

    /// A URL prefix on which the host fails that way, and what to close after the test.
    static func failing(_ fault: Fault) throws -> (base: String, close: @Sendable () -> Void) {
        switch fault {
        case .refused:
            let port = try RefusingPort()
            return ("http://127.0.0.1:\(port.port)", { port.close() })
        case .hangs:
            let listener = try SilentListener()
            return ("http://127.0.0.1:\(listener.port)", { listener.close() })
        }
    }

    @Test(arguments: Fault.allCases)
    func rbacHostFailingIs503WithinItsDeadline(_ fault: Fault) async throws {
        let (base, close) = try Self.failing(fault)
        defer { close() }
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run(extra: ["HOST_RBAC_API_URL": base + "/api"]) { host, client, _ in
            await host.state.set(keys: [key])
            let token = try Tokens.make(Tokens.claims(), signing: .rs256(key))
            // Untimed first: it also fetches the key set.
            _ = try await client.call(.get, "/probe/read", token: token)
            var fastest = Duration.seconds(3600)
            var fastestBeyondBaseline = Duration.seconds(3600)
            for path in ["/probe/read", "/probe/write", "/probe/read"] {
                // The same server's answer that needs no RBAC (a 404), just before: what the machine's
                // load alone costs a request right now.
                let probed = ContinuousClock.now
                _ = try await client.call(.get, "/no-such-route", token: token)
                let baseline = ContinuousClock.now - probed
                let started = ContinuousClock.now
                let (status, body, _) = try await client.call(path == "/probe/read" ? .get : .post, path, token: token)
                let took = ContinuousClock.now - started
                fastest = min(fastest, took)
                fastestBeyondBaseline = min(fastestBeyondBaseline, took - baseline)
                #expect(status == .serviceUnavailable, "\(fault): \(body)")
                #expect(body["code"] == "RBAC_UNAVAILABLE")
            }
            // The RBAC deadline is 2 s: a hang costs at least that; a refusal fails at once (no connect
            // retries), so beyond what load alone costs (the baseline) it must come in well under the
            // deadline — with retries it never could. The fastest of three, so one slow moment of a
            // loaded machine (a coverage run) does not decide.
            switch fault {
            case .refused: #expect(fastestBeyondBaseline < .milliseconds(1500), "\(fastest), \(fastestBeyondBaseline) beyond the baseline")
            case .hangs: #expect(fastest >= .milliseconds(1500) && fastest < .seconds(6), "waited for the deadline: \(fastest)")
            }
        }
    }

    /// A host that accepted the call and hangs past the deadline is an outage like a 500: a stale
    /// entry serves reads, never writes.
    @Test func rbacHostHangingPastTheDeadlineServesStaleReadsOnly() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_READ", "LEADS_WRITE"], ttlSeconds: 1))
            let token = try Tokens.make(Tokens.claims(), signing: .rs256(key))
            #expect(try await client.call(.get, "/probe/read", token: token).0 == .ok)
            try await Task.sleep(for: .milliseconds(1200))  // past the entry's 1 s TTL: stale, within RBAC_STALE_MAX_SECONDS
            await host.state.set(rbacDelay: .seconds(8))
            let started = ContinuousClock.now
            let (read, readBody, _) = try await client.call(.get, "/probe/read", token: token)
            #expect(read == .ok, "\(readBody)")
            #expect(readBody["degraded"] == "1")
            #expect(ContinuousClock.now - started < .seconds(6))
            let (write, writeBody, _) = try await client.call(.post, "/probe/write", token: token)
            #expect(write == .serviceUnavailable, "writes are never served from a stale entry")
            #expect(writeBody["code"] == "RBAC_UNAVAILABLE")
            await host.state.set(rbacDelay: .zero)
        }
    }

    @Test(arguments: Fault.allCases)
    func jwksHostFailingIs503WithinItsDeadline(_ fault: Fault) async throws {
        let (base, close) = try Self.failing(fault)
        defer { close() }
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run(extra: ["HOST_JWKS_URI": base + "/.well-known/jwks.json"]) { host, client, _ in
            await host.state.set(keys: [key])
            let token = try Tokens.make(Tokens.claims(), signing: .rs256(key))
            let started = ContinuousClock.now
            let (status, body, _) = try await client.call(.get, "/probe/read", token: token)
            let took = ContinuousClock.now - started
            #expect(status == .serviceUnavailable, "\(fault): no key set is not an answer about the token: \(body)")
            #expect(took < (fault == .refused ? .seconds(1) : .seconds(6)), "\(fault): \(took)")
            #expect(await host.state.rbacFetches == 0, "nothing asked about a token that was never verified")
        }
    }

    /// The JWKS endpoint failing after a good fetch: tokens of the last good set keep verifying, a
    /// refetch that failed is not retried for 5 s (the host is not hammered), and the first fetch
    /// after that picks up the host's new key.
    @Test func aFailingJWKSKeepsTheLastGoodSetAndBacksOff() async throws {
        let first = try TestKey.make(kid: "k1")
        let second = try TestKey.make(kid: "k2")
        let host = StandInHost()
        try await host.application().test(.live) { hostClient in
            await host.state.set(keys: [first])
            let cache = JWKSCache(
                source: .http(uri: "http://127.0.0.1:\(hostClient.port ?? 0)/.well-known/jwks.json"), sharedCache: InProcessCache(),
                logger: ScratchDatabase.logger, unknownKidCooldown: .zero)
            guard case .found = await cache.keys(for: "k1") else { Issue.record("k1 from the first fetch"); return }
            #expect(await host.state.jwksFetches == 1)
            await host.state.set(keys: [first, second])
            await host.state.set(jwksFailing: true)
            guard case .unknownKid = await cache.keys(for: "k2") else { Issue.record("k2 is unknown while the host fails"); return }
            #expect(await host.state.jwksFetches == 2, "one refetch for the unknown kid")
            guard case .found = await cache.keys(for: "k1") else { Issue.record("the last good set keeps serving"); return }
            for _ in 0..<20 { _ = await cache.keys(for: "k2") }
            #expect(await host.state.jwksFetches == 2, "no refetch within 5 s of a failure")
            await host.state.set(jwksFailing: false)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(200)) {
                if case .found = await cache.keys(for: "k2") { return true }
                return false
            })
            let fetches = await host.state.jwksFetches
            #expect(fetches == 3, "one fetch after the backoff: \(fetches)")
        }
    }
}

/// A live PostgreSQL of the test's own, stopped and started again in the middle of work.
@Suite(.serialized) struct LivePostgresOutageTests {
    static func create(_ client: any TestClientProtocol, _ token: String, _ name: String) async throws -> Reply {
        try await client.send(.post, "/api/leads", token: token, json: #"{"name":"\#(name)","email":"\#(name)@acme.example"}"#)
    }

    /// Pooled connections die with the server: requests answer bounded 503s (never a 500, never a
    /// hang), readiness says not ready, nothing is half-written; when the server is back the pool
    /// reconnects by itself, every lead acknowledged before is there and the audit chain is intact.
    @Test func postgresStoppedMidWorkAnswers503AndRecovers() async throws {
        let postgres = try OwnPostgres()
        try await postgres.start()
        try await LeadsHarness.run(databaseURL: postgres.url) { host, key, client in
            let tenant = "t-outage-\(UUID().uuidString.prefix(6))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u", ["LEADS_READ", "LEADS_WRITE"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u")
            var acknowledged: Set<String> = []
            // Concurrent writes: the pool holds several connections when the server goes.
            try await withThrowingTaskGroup(of: Reply.self) { group in
                for index in 0..<8 { group.addTask { try await Self.create(client, token, "before-\(index)") } }
                for try await reply in group {
                    #expect(reply.status == .created, "\(reply.body)")
                    if let id = reply.json["id"] as? String { acknowledged.insert(id) }
                }
            }
            #expect(acknowledged.count == 8)
            try await postgres.stop(mode: "immediate")
            for index in 0..<4 {
                let started = ContinuousClock.now
                let write = try await Self.create(client, token, "during-\(index)")
                #expect(write.status == .serviceUnavailable, "\(write.body)")
                #expect(write.code == "SERVICE_UNAVAILABLE")
                let read = try await client.send(.get, "/api/leads", token: token)
                #expect(read.status == .serviceUnavailable, "\(read.body)")
                // 2.5 × the two deadlines: the full parallel suite on two shared cores once took 12.4 s (session 13).
                #expect(ContinuousClock.now - started < .seconds(15), "two requests, each bounded by the 3 s deadline")
            }
            #expect(try await client.execute(uri: "/health/ready", method: .get) { $0.status } == .serviceUnavailable)
            try await postgres.start()
            let recovered = await eventually(timeout: .seconds(30), every: .milliseconds(250)) {
                (try? await client.send(.get, "/api/leads?limit=100", token: token))?.status == .ok
            }
            #expect(recovered, "the pool reconnects without a restart")
            let listing = try await client.send(.get, "/api/leads?limit=100", token: token)
            let items = (listing.json["items"] as? [[String: Any]]) ?? []
            let names = Set(items.compactMap { $0["name"] as? String })
            #expect(Set(items.compactMap { $0["id"] as? String }) == acknowledged, "every acknowledged write, nothing else")
            #expect(!names.contains { $0.hasPrefix("during-") }, "a 503 committed nothing")
            #expect(try await Self.create(client, token, "after").status == .created)
            #expect(try await client.execute(uri: "/health/ready", method: .get) { $0.status } == .ok)
        }
        // The chain of every audited write, before and after the crash, verifies.
        let verify = try await FnhostProcess.run(["verify-audit", "--full"], environment: ["DATABASE_URL": postgres.url])
        #expect(verify.status == 0, "\(verify.output)")
    }

    /// Start-up with the database down: the host serves (503 naming nothing secret, readiness not
    /// ready), and the background retry applies the migrations once the server is up — no restart.
    @Test func migrationsApplyWhenPostgresComesBack() async throws {
        let postgres = try OwnPostgres()
        try await LeadsHarness.run(databaseURL: postgres.url) { host, key, client in
            await LeadsHarness.grant(host, tenant: "t-late", user: "u", ["LEADS_READ", "LEADS_WRITE"])
            let token = try LeadsHarness.token(key, tenant: "t-late", user: "u")
            let down = try await client.send(.get, "/api/leads", token: token)
            #expect(down.status == .serviceUnavailable, "\(down.body)")
            #expect(!down.body.contains(postgres.url))
            try await postgres.start()
            let served = await eventually(timeout: .seconds(40), every: .milliseconds(500)) {
                (try? await Self.create(client, token, "late"))?.status == .created
            }
            if !served {
                let last = try? await Self.create(client, token, "late")
                let ready = try? await client.execute(uri: "/health/ready", method: .get) { String(buffer: $0.body) }
                Issue.record("not serving after the database came back: \(String(describing: last?.status)) \(last?.body ?? "") ready: \(ready ?? "")")
            }
            #expect(served, "migrated in the background and serving")
            #expect(try await client.execute(uri: "/health/ready", method: .get) { $0.status } == .ok)
        }
        let configuration = try PostgresURL.configuration(postgres.url, caFile: nil)
        let pending = try await StoreSetup.withClient(configuration, logger: ScratchDatabase.logger) {
            try await PostgresMigrator.pending($0, logger: ScratchDatabase.logger)
        }
        #expect(pending.isEmpty)
    }
}

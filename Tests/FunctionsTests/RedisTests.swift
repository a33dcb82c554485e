import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import Testing

@testable import Functions

/// Against a real Redis started by scripts/with-services.sh (`make test` sets FNHOST_TEST_REDIS_URL).
enum TestRedis {
    static func url() throws -> String { try TestServices.redisURL() }

    /// A client with a generous deadline: these tests are about what Redis holds, not about
    /// deadlines, and a loaded 2-core CI machine can stall an event loop for a while.
    static func client() throws -> RedisClient {
        RedisClient(endpoint: try RedisEndpoint(url: try url()), commandTimeout: .seconds(5))
    }
}

typealias RedisTestError = TestSupportError

@Suite(.serialized) struct RedisCacheTests {
    @Test func cacheOperationsAgainstRealRedis() async throws {
        let cache = RedisCache(client: try TestRedis.client())
        let prefix = "test:\(UUID().uuidString):"
        try await cache.set(prefix + "a", Array("1".utf8), ttl: .seconds(30))
        #expect(try await cache.get(prefix + "a") == Array("1".utf8))
        #expect(try await cache.get(prefix + "missing") == nil)
        #expect(try await cache.setIfAbsent(prefix + "once", Array("x".utf8), ttl: .seconds(30)))
        #expect(try await cache.setIfAbsent(prefix + "once", Array("y".utf8), ttl: .seconds(30)) == false)
        // A long TTL: 1,200 round trips can take many seconds on a loaded CI machine, and an entry
        // expiring before the SCAN would read as a miss.
        for index in 0..<1200 { try await cache.set(prefix + "many:\(index)", [1], ttl: .seconds(600)) }
        try await cache.set("other:\(prefix)keep", [1], ttl: .seconds(30))
        #expect(try await cache.deletePrefix(prefix + "many:") == 1200, "SCAN visits every key, in batches")
        #expect(try await cache.get("other:\(prefix)keep") == [1])
        try await cache.set(prefix + "short", [1], ttl: .milliseconds(100))
        try await Task.sleep(for: .milliseconds(250))
        #expect(try await cache.get(prefix + "short") == nil)
        #expect(await cache.ping())
    }

    @Test func deadRedisFailsFastAndCountsAsUnavailable() async throws {
        let cache = RedisCache(client: RedisClient(endpoint: try RedisEndpoint(url: "redis://127.0.0.1:1")))
        let started = ContinuousClock.now
        await #expect(throws: CacheUnavailable.self) { _ = try await cache.get("x") }
        await #expect(throws: CacheUnavailable.self) { _ = try await cache.get("x") }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(await cache.ping() == false)
    }

    @Test func rbacEntriesLiveInRedisAndPurgeReachesEveryInstance() async throws {
        let key = try TestKey.make(kid: "k1")
        let redisURL = try TestRedis.url()
        let tenant = "t-\(UUID().uuidString.prefix(8))"
        try await IdentityHarness.run(extra: ["REDIS_URL": redisURL]) { host, client, box in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: tenant, userID: "u-1", permissions: ["LEADS_READ"], ttlSeconds: 120))
            await host.state.set(answer: RBACAnswer(tenantID: tenant, userID: "u-2", permissions: ["LEADS_READ"], ttlSeconds: 120))
            for user in ["u-1", "u-2"] {
                let token = try Tokens.make(Tokens.claims(tenant: tenant, sub: user), signing: .rs256(key))
                let status = try await client.call(.get, "/probe/read", token: token).0
                #expect(status == .ok)
            }
            let redis = RedisCache(client: try TestRedis.client())
            let entryKey = RBACService.key(tenant: tenant.tenant, user: "u-1")
            let sealed = try #require(try await redis.get(entryKey))
            #expect(sealed.first == SignedCache.version, "sealed, not plain JSON")
            let signed = try #require(box.setup?.cache as? SignedCache)
            let opened = try #require(signed.open(sealed, key: entryKey))
            let entry = try JSONDecoder().decode(RBACService.Entry.self, from: Data(opened))
            #expect(entry.answer.permissions == ["LEADS_READ"])
            #expect(abs(entry.fetchedAt - Date().timeIntervalSince1970) < 30)

            // A second instance on the same Redis reads the shared entry (and the shared JWKS): no host call.
            let fetchesBefore = await host.state.rbacFetches
            let jwksBefore = await host.state.jwksFetches
            let second = ProbeModuleBox()
            let secondHost = try await FunctionHost.build(
                options: .init(scriptRoot: try IdentityHarness.scriptRoot(), port: 0), module: second.module,
                environment: IdentityHarness.hostSettings(box.hostPort.withLock { $0 }, extra: ["REDIS_URL": redisURL]),
                logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
            try await secondHost.application().test(.live) { secondClient in
                let token = try Tokens.make(Tokens.claims(tenant: tenant, sub: "u-1"), signing: .rs256(key))
                let status = try await secondClient.call(.get, "/probe/read", token: token).0
                #expect(status == .ok)
            }
            #expect(await host.state.rbacFetches == fetchesBefore)
            #expect(await host.state.jwksFetches == jwksBefore)

            // Purge one user, then the whole tenant.
            let rbac = try #require(box.setup?.rbac)
            #expect(try await rbac.purge(tenant: tenant.tenant, user: "u-1") == 1)
            #expect(try await redis.get("rbac:\(tenant):u-1") == nil)
            #expect(try await redis.get("rbac:\(tenant):u-2") != nil)
            #expect(try await rbac.purge(tenant: tenant.tenant, user: nil) == 1)
            #expect(try await redis.get("rbac:\(tenant):u-2") == nil)
            let token = try Tokens.make(Tokens.claims(tenant: tenant, sub: "u-1"), signing: .rs256(key))
            let status = try await client.call(.get, "/probe/read", token: token).0
            #expect(status == .ok)
            #expect(await host.state.rbacFetches == fetchesBefore + 1, "the purged entry is fetched again")
        }
    }

    @Test func cacheOutageAloneNeverDenies() async throws {
        let key = try TestKey.make(kid: "k1")
        try await IdentityHarness.run(extra: ["REDIS_URL": "redis://127.0.0.1:1"]) { host, client, _ in
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: "t-acme", userID: "u-42", permissions: ["LEADS_WRITE"]))
            let token = try Tokens.make(Tokens.claims(), signing: .rs256(key))
            let status = try await client.call(.post, "/probe/write", token: token).0
            #expect(status == .ok, "Redis down: the host answers directly")
        }
    }
}


@Suite(.serialized) struct CrossInstancePurgeTests {
    @Test func purgeOnOneInstanceDropsTheOthersLocalCopyAtOnce() async throws {
        let key = try TestKey.make(kid: "k1")
        let redisURL = try TestRedis.url()
        let tenant = "t-\(UUID().uuidString.prefix(8))"
        let host = StandInHost()
        try await host.application().test(.live) { hostClient in
            let port = try #require(hostClient.port)
            await host.state.set(keys: [key])
            await host.state.set(answer: RBACAnswer(tenantID: tenant, userID: "u-1", permissions: ["LEADS_READ"], ttlSeconds: 300))
            let settings = IdentityHarness.hostSettings(port, extra: ["REDIS_URL": redisURL])
            let first = ProbeModuleBox()
            let second = ProbeModuleBox()
            let quiet = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
            let hostA = try await FunctionHost.build(
                options: .init(scriptRoot: try IdentityHarness.scriptRoot(), port: 0), module: first.module, environment: settings, logger: quiet)
            let hostB = try await FunctionHost.build(
                options: .init(scriptRoot: try IdentityHarness.scriptRoot(), port: 0), module: second.module, environment: settings, logger: quiet)
            let token = try Tokens.make(Tokens.claims(tenant: tenant, sub: "u-1"), signing: .rs256(key))
            try await hostA.application().test(.live) { clientA in
                try await hostB.application().test(.live) { clientB in
                    let warmA = try await clientA.call(.get, "/probe/read", token: token).0
                    let warmB = try await clientB.call(.get, "/probe/read", token: token).0
                    // B's local copy lives 5 s; a fetch before then can only come from the purge message.
                    let localCopyExpires = ContinuousClock.now + .milliseconds(4500)
                    #expect(warmA == .ok && warmB == .ok)
                    let fetches = await host.state.rbacFetches
                    #expect(fetches == 1, "B found A's entry in Redis")
                    // Wait for the condition, not a fixed time: both instances subscribed to the purge channel.
                    let redis = try TestRedis.client()
                    var subscribers: Int64 = 0
                    for _ in 0..<250 {
                        let reply = try await redis.command(["PUBSUB", "NUMSUB", RBACService.purgeChannel].map { Array($0.utf8) })
                        if case .array(let parts) = reply, parts.count == 2 { subscribers = parts[1].integer ?? 0 }
                        if subscribers >= 2 { break }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    #expect(subscribers >= 2, "both instances subscribed")

                    let rbacA = try #require(first.setup?.rbac)
                    _ = try await rbacA.purge(tenant: tenant.tenant, user: "u-1")
                    var refetched = false
                    while !refetched, ContinuousClock.now < localCopyExpires {
                        let afterPurge = try await clientB.call(.get, "/probe/read", token: token).0
                        #expect(afterPurge == .ok)
                        refetched = await host.state.rbacFetches == fetches + 1
                        if !refetched { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    #expect(refetched, "B dropped its local copy on A's purge message")
                }
            }
        }
    }
}

import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import Testing

@testable import Functions

@Suite(.serialized) struct RateLimitRedisTests {
    static let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }

    @Test func twoLimitersShareOneBudgetInRedis() async throws {
        let policy = RateLimitPolicy(perSecond: 0.01, burst: 5)  // no refill worth mentioning on a slow machine
        let first = RedisRateLimiter(client: try TestRedis.client(), policy: policy, instanceCountHint: 2, logger: Self.logger)
        let second = RedisRateLimiter(client: try TestRedis.client(), policy: policy, instanceCountHint: 2, logger: Self.logger)
        let key = "rl:test:\(UUID().uuidString)"
        var allowed = 0
        for index in 0..<8 where await (index.isMultiple(of: 2) ? first : second).check(key).allowed { allowed += 1 }
        #expect(allowed == 5, "the burst is shared, not 5 per instance")
        let denied = await first.check(key)
        #expect(!denied.allowed)
        #expect(denied.retryAfter > 0 && denied.retryAfter <= 100_000_000)
        #expect(!first.isDegraded)
        let ttl = try await TestRedis.client().command(["PTTL", key]).integer ?? -1
        #expect(ttl > 0 && ttl <= 500_000, "the key expires once the bucket is full again: \(ttl)")
    }

    @Test func redisDownLimitsPerInstanceWithTheDividedBudgetAndSwitchesBack() async throws {
        let redis = try OwnRedis()
        let limiter = RedisRateLimiter(
            client: RedisClient(endpoint: try RedisEndpoint(url: "redis://127.0.0.1:\(redis.port)")),
            policy: RateLimitPolicy(perSecond: 0.01, burst: 6), instanceCountHint: 2, logger: Self.logger)
        let key = "rl:test:\(UUID().uuidString)"
        var allowed = 0
        for _ in 0..<6 where await limiter.check(key).allowed { allowed += 1 }
        #expect(allowed == 3, "Redis down: this instance allows 6 / 2")
        #expect(limiter.isDegraded)
        try await redis.start()
        try await Task.sleep(for: .milliseconds(1200))  // the client's 1 s breaker
        let other = "rl:test:\(UUID().uuidString)"
        var shared = 0
        for _ in 0..<8 where await limiter.check(other).allowed { shared += 1 }
        await redis.stop()
        #expect(shared == 6, "Redis back: the full shared budget again")
        #expect(!limiter.isDegraded)
    }

    @Test func overBudgetAnswers429WithHeaders() async throws {
        try await LeadsHarness.run(
            databaseURL: try Backend.sqlite.databaseURL(), extra: ["RATE_LIMIT_PER_SECOND": "0.02", "RATE_LIMIT_BURST": "3"]
        ) { host, key, client in
            await LeadsHarness.grant(host, tenant: "t-rl", user: "u-1", ["LEADS_READ"])
            await LeadsHarness.grant(host, tenant: "t-rl", user: "u-2", ["LEADS_READ"])
            let token = try LeadsHarness.token(key, tenant: "t-rl", user: "u-1")
            for remaining in [2, 1, 0] {
                let reply = try await client.send(.get, "/api/leads", token: token)
                #expect(reply.status == .ok)
                #expect(reply.headers[RateLimitHeaders.rateLimit]?.hasPrefix(#""default";r=\#(remaining);t="#) == true)
                #expect(reply.headers[RateLimitHeaders.rateLimitPolicy] == #""default";q=3;w=150"#)
            }
            let limited = try await client.send(.get, "/api/leads", token: token)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.code == "RATE_LIMITED")
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(limited.headers[RateLimitHeaders.rateLimit]?.hasPrefix(#""default";r=0;"#) == true)
            let otherUser = try LeadsHarness.token(key, tenant: "t-rl", user: "u-2")
            #expect(try await client.send(.get, "/api/leads", token: otherUser).status == .ok, "the budget is per user")
        }
    }
}

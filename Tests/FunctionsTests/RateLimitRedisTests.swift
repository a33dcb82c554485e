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

    /// EVALSHA calls the server has run (its own counter, so only this test's calls count).
    static func scriptCalls(_ redis: OwnRedis) async throws -> Int {
        let info = try await runProgram("/usr/bin/env", ["redis-cli", "-p", String(redis.port), "INFO", "commandstats"]).output
        let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_evalsha:") }
        return line.flatMap { $0.split(separator: "calls=").last?.split(separator: ",").first }.flatMap { Int($0) } ?? 0
    }

    /// Three instances sharing one budget in slices of 8: together they never admit more than the
    /// budget, admit all of it while they keep being asked, and ask Redis about once per slice —
    /// not once per request — with a remembered denial costing no call at all.
    @Test func threeInstancesHoldTheSharedLimitInReservations() async throws {
        let redis = try OwnRedis()
        try await redis.start()
        defer { Task { await redis.stop() } }
        let policy = RateLimitPolicy(perSecond: 0.01, burst: 60)
        let endpoint = try RedisEndpoint(url: redis.url())
        let limiters = (0..<3).map { _ in
            RedisRateLimiter(
                client: RedisClient(endpoint: endpoint, commandTimeout: .seconds(5)), policy: policy,
                instanceCountHint: 3, logger: Self.logger, slice: 8, lease: .seconds(30))
        }
        let key = "rl:test:\(UUID().uuidString)"
        var allowed = 0
        for index in 0..<300 where await limiters[index % 3].check(key).allowed { allowed += 1 }
        #expect(allowed == 60, "the whole budget, never more: \(allowed)")
        let calls = try await Self.scriptCalls(redis)
        #expect(calls <= 60 / 8 + 3 + 3, "about one call per slice: \(calls) for 300 checks")
        let denied = await limiters[0].check(key)
        #expect(!denied.allowed && denied.retryAfter > 0)
        #expect(try await Self.scriptCalls(redis) == calls, "a remembered denial asks nothing")
        // The default slice: small against the burst (100 / (8 × 3) → 4).
        #expect(RedisRateLimiter(
            client: RedisClient(endpoint: try RedisEndpoint(url: redis.url())), policy: RateLimitPolicy(perSecond: 50, burst: 100),
            instanceCountHint: 3, logger: Self.logger).slice == 4)
    }

    /// Tokens a lease did not use go back to Redis with the instance's next reservation for the key,
    /// and all of them on `returnAll()` (a draining instance).
    @Test func unusedReservationsGoBack() async throws {
        let redis = try OwnRedis()
        try await redis.start()
        defer { Task { await redis.stop() } }
        let client = RedisClient(endpoint: try RedisEndpoint(url: redis.url()), commandTimeout: .seconds(5))
        let policy = RateLimitPolicy(perSecond: 0.01, burst: 20)  // one token = 100 s of TAT
        let limiter = RedisRateLimiter(client: client, policy: policy, instanceCountHint: 1, logger: Self.logger, slice: 10, lease: .milliseconds(200))
        let key = "rl:test:\(UUID().uuidString)"
        /// Tokens Redis counts as taken: (TAT − now) / interval.
        func taken() async throws -> Int {
            let tat = Double(try await client.command(["GET", key]).bytes.map { String(decoding: $0, as: UTF8.self) } ?? "0") ?? 0
            let now = Double(RateLimitClock.microseconds())
            return Int(((tat - now) / Double(policy.emissionInterval)).rounded())
        }
        #expect(await limiter.check(key).allowed)
        #expect(try await taken() == 10, "one slice reserved")
        try await Task.sleep(for: .milliseconds(300))  // past the lease
        #expect(await limiter.check(key).allowed)
        #expect(try await taken() == 11, "9 unused given back, a new slice of 10 taken (1 + 10)")
        await limiter.returnAll()
        #expect(try await taken() == 2, "the 9 held tokens given back: the 2 spent remain")
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

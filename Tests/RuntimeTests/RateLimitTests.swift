import FunctionRuntime
import HTTPTypes
import Synchronization
import Testing

struct RateLimitTests {
    @Test func gcraAllowsTheBurstThenTheSustainedRate() {
        let policy = RateLimitPolicy(perSecond: 50, burst: 3)  // one request every 20,000 µs
        var tat: Int64?
        var decisions: [RateLimitDecision] = []
        for _ in 0..<4 {
            let (decision, next) = GCRA.decide(tat: tat, now: 1_000_000, policy: policy)
            decisions.append(decision)
            if let next { tat = next }
        }
        #expect(decisions.map(\.allowed) == [true, true, true, false])
        #expect(decisions.map(\.remaining) == [2, 1, 0, 0])
        #expect(decisions[3].retryAfter == 20_000, "one emission interval until the next slot")
        #expect(decisions[2].resetAfter == 60_000, "the full burst is back after 3 intervals")
        // After one interval exactly one more request fits; after the full reset, the whole burst.
        #expect(GCRA.decide(tat: tat, now: 1_020_000, policy: policy).0.allowed)
        #expect(!GCRA.decide(tat: tat, now: 1_019_999, policy: policy).0.allowed)
        #expect(GCRA.decide(tat: tat, now: 1_060_000, policy: policy).0.remaining == 2)
    }

    /// Property: GCRA admits exactly what a continuous token bucket (capacity = burst) admits.
    @Test func gcraMatchesATokenBucketOnRandomTraffic() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let policy = RateLimitPolicy(perSecond: [1, 4, 10, 50, 1000].randomElement(using: &generator) ?? 1, burst: Int.random(in: 1...20, using: &generator))
            let interval = policy.emissionInterval
            var tat: Int64?
            var level: Int64 = 0  // bucket fill, in µs of "debt" (capacity = burst × interval)
            var last: Int64 = 0
            var now: Int64 = 0
            for _ in 0..<300 {
                now += Int64.random(in: 0...(interval * 2), using: &generator)
                level = max(0, level - (now - last))
                last = now
                let bucketAllows = level + interval <= interval * Int64(policy.burst)
                if bucketAllows { level += interval }
                let (decision, next) = GCRA.decide(tat: tat, now: now, policy: policy)
                if let next { tat = next }
                #expect(decision.allowed == bucketAllows)
            }
        }
    }

    @Test func inProcessLimiterKeepsKeysApartAndDividesForFallback() async {
        let clock = FakeClock()
        let limiter = InProcessRateLimiter(policy: RateLimitPolicy(perSecond: 1, burst: 2), clock: { clock.now })
        #expect(await limiter.check("a").allowed)
        #expect(await limiter.check("a").allowed)
        #expect(await !limiter.check("a").allowed)
        #expect(await limiter.check("b").allowed, "another key has its own budget")
        clock.advance(1_000_000)
        #expect(await limiter.check("a").allowed)
        #expect(RateLimitPolicy(perSecond: 50, burst: 100).divided(by: 4) == RateLimitPolicy(perSecond: 12.5, burst: 25))
        #expect(RateLimitPolicy(perSecond: 1, burst: 1).divided(by: 4).burst == 1, "never below one request")
    }

    @Test func headersFollowTheIETFDraft() {
        let policy = RateLimitPolicy(perSecond: 50, burst: 100)
        var headers = HTTPFields()
        RateLimitHeaders.apply(RateLimitDecision(allowed: true, remaining: 7, retryAfter: 0, resetAfter: 1_860_000), policy: policy, to: &headers)
        #expect(headers[RateLimitHeaders.rateLimitPolicy] == #""default";q=100;w=2"#)
        #expect(headers[RateLimitHeaders.rateLimit] == #""default";r=7;t=2"#)
        #expect(headers[.retryAfter] == nil)
        RateLimitHeaders.apply(RateLimitDecision(allowed: false, remaining: 0, retryAfter: 300_000, resetAfter: 2_000_000), policy: policy, to: &headers)
        #expect(headers[.retryAfter] == "1")
        #expect(headers[RateLimitHeaders.rateLimit] == #""default";r=0;t=2"#)
    }
}

final class FakeClock: Sendable {
    private let value = Atomic<Int64>(1_700_000_000_000_000)
    var now: Int64 { value.load(ordering: .relaxed) }
    func advance(_ micros: Int64) { value.add(micros, ordering: .relaxed) }
}

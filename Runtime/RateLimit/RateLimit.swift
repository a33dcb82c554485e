import Foundation
import HTTPTypes
import Synchronization

/// A request budget: `perSecond` sustained, up to `burst` at once (GCRA, the leaky bucket as a
/// single timestamp per key).
public struct RateLimitPolicy: Sendable, Equatable {
    public var perSecond: Double
    public var burst: Int

    public init(perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        self.burst = max(1, burst)
    }

    /// Microseconds between two requests at the sustained rate.
    public var emissionInterval: Int64 { Int64((1_000_000 / max(perSecond, 0.000_001)).rounded(.up)) }

    /// The budget each instance enforces alone when the shared store is down: divided by the number
    /// of instances, so together they still allow about the configured budget.
    public func divided(by instances: Int) -> RateLimitPolicy {
        let n = Double(max(1, instances))
        return RateLimitPolicy(perSecond: perSecond / n, burst: max(1, Int((Double(burst) / n).rounded(.down))))
    }
}

public struct RateLimitDecision: Sendable, Equatable {
    public var allowed: Bool
    /// Requests left in the burst after this one.
    public var remaining: Int
    /// Microseconds until a request would be allowed (0 when allowed).
    public var retryAfter: Int64
    /// Microseconds until the full burst is available again.
    public var resetAfter: Int64

    public init(allowed: Bool, remaining: Int, retryAfter: Int64, resetAfter: Int64) {
        self.allowed = allowed
        self.remaining = remaining
        self.retryAfter = retryAfter
        self.resetAfter = resetAfter
    }
}

/// GCRA: each key holds a theoretical arrival time (TAT). A request at `now` moves it to
/// `max(TAT, now) + T`; it is allowed while that stays within `burst × T` of now.
/// (The same arithmetic runs in Redis as a Lua script for the shared limiter.)
public enum GCRA {
    public static func decide(tat stored: Int64?, now: Int64, policy: RateLimitPolicy) -> (RateLimitDecision, newTAT: Int64?) {
        let interval = policy.emissionInterval
        let capacity = interval * Int64(policy.burst)
        let tat = max(stored ?? now, now)
        let next = tat + interval
        let over = next - now - capacity
        if over > 0 {
            return (RateLimitDecision(allowed: false, remaining: 0, retryAfter: over, resetAfter: tat - now), nil)
        }
        return (RateLimitDecision(allowed: true, remaining: Int((capacity - (next - now)) / interval), retryAfter: 0, resetAfter: next - now), next)
    }
}

/// Decides whether the holder of `key` may make one more request.
public protocol RateLimiter: Sendable {
    var policy: RateLimitPolicy { get }
    func check(_ key: String) async -> RateLimitDecision
}

/// Per-process GCRA in a bounded map (keys whose TAT has passed are dropped when it fills).
public final class InProcessRateLimiter: RateLimiter {
    public let policy: RateLimitPolicy
    private let state = Mutex<[String: Int64]>([:])
    private let capacity: Int
    private let clock: @Sendable () -> Int64

    public init(policy: RateLimitPolicy, capacity: Int = 100_000, clock: @escaping @Sendable () -> Int64 = RateLimitClock.microseconds) {
        self.policy = policy
        self.capacity = capacity
        self.clock = clock
    }

    public func check(_ key: String) async -> RateLimitDecision {
        let now = clock()
        return state.withLock { map in
            let (decision, next) = GCRA.decide(tat: map[key], now: now, policy: policy)
            if let next {
                if map.count >= capacity, map[key] == nil {
                    map = map.filter { $0.value > now }
                    if map.count >= capacity { map.removeAll(keepingCapacity: true) }
                }
                map[key] = next
            }
            return decision
        }
    }
}

public enum RateLimitClock {
    /// Wall-clock microseconds (comparable across processes, like Redis `TIME`).
    public static func microseconds() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1_000_000)
    }
}

/// IETF `draft-ietf-httpapi-ratelimit-headers`: `RateLimit-Policy` (quota `q` per window `w`
/// seconds) and `RateLimit` (remaining `r`, seconds until reset `t`), plus `Retry-After` on a 429.
public enum RateLimitHeaders {
    public static let rateLimit = HTTPField.Name("RateLimit")!
    public static let rateLimitPolicy = HTTPField.Name("RateLimit-Policy")!

    public static func policyValue(_ policy: RateLimitPolicy) -> String {
        let window = max(1, Int((Double(policy.burst) / max(policy.perSecond, 0.000_001)).rounded(.up)))
        return "\"default\";q=\(policy.burst);w=\(window)"
    }

    public static func apply(_ decision: RateLimitDecision, policy: RateLimitPolicy, to headers: inout HTTPFields) {
        headers[rateLimitPolicy] = policyValue(policy)
        headers[rateLimit] = "\"default\";r=\(decision.remaining);t=\(seconds(decision.resetAfter))"
        if !decision.allowed { headers[.retryAfter] = String(max(1, seconds(decision.retryAfter))) }
    }

    /// Whole seconds, rounded up.
    static func seconds(_ micros: Int64) -> Int64 { (max(0, micros) + 999_999) / 1_000_000 }
}

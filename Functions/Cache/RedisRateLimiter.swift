import Crypto
import FunctionRuntime
import Logging
import Synchronization

/// The shared GCRA limiter: one Lua script per check (`EVALSHA`, loaded with `EVAL` on
/// `NOSCRIPT`), using Redis' own clock so instances with skewed clocks agree; works on managed
/// Redis (no module). When Redis does not answer, every instance limits alone with the budget
/// divided by `INSTANCE_COUNT_HINT` — a cache outage neither opens the gates nor stops the
/// service — and the next check that reaches Redis switches back.
final class RedisRateLimiter: RateLimiter {
    static let script = """
        if redis.replicate_commands then pcall(redis.replicate_commands) end
        local interval = tonumber(ARGV[1])
        local capacity = interval * tonumber(ARGV[2])
        local clock = redis.call('TIME')
        local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
        local tat = tonumber(redis.call('GET', KEYS[1]) or now)
        if tat < now then tat = now end
        local next = tat + interval
        local over = next - now - capacity
        if over > 0 then return {0, 0, over, tat - now} end
        redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
        return {1, math.floor((capacity - (next - now)) / interval), 0, next - now}
        """
    static let scriptSHA = Hex.encode(Insecure.SHA1.hash(data: Array(script.utf8)))

    let policy: RateLimitPolicy
    private let client: RedisClient
    private let fallback: InProcessRateLimiter
    private let logger: Logger
    private let degraded = Atomic<Bool>(false)

    init(client: RedisClient, policy: RateLimitPolicy, instanceCountHint: Int, logger: Logger) {
        self.client = client
        self.policy = policy
        self.fallback = InProcessRateLimiter(policy: policy.divided(by: instanceCountHint))
        self.logger = logger
    }

    var isDegraded: Bool { degraded.load(ordering: .relaxed) }

    func check(_ key: String) async -> RateLimitDecision {
        let arguments = [key, "\(policy.emissionInterval)", "\(policy.burst)"].map { Array($0.utf8) }
        var reply: RedisValue
        do {
            do {
                reply = try await client.command([Array("EVALSHA".utf8), Array(Self.scriptSHA.utf8), Array("1".utf8)] + arguments)
            } catch .reply(let message) where message.hasPrefix("NOSCRIPT") {
                reply = try await client.command([Array("EVAL".utf8), Array(Self.script.utf8), Array("1".utf8)] + arguments)
            }
        } catch {
            if !degraded.exchange(true, ordering: .relaxed) {
                logger.warning("rate limiter: Redis unavailable, each instance limits alone", metadata: ["reason": .string(error.description)])
            }
            return await fallback.check(key)
        }
        guard case .array(let values) = reply, values.count == 4, let allowed = values[0].integer, let remaining = values[1].integer,
            let retryAfter = values[2].integer, let reset = values[3].integer
        else {
            // An answer we do not understand: limit locally rather than let everything through.
            return await fallback.check(key)
        }
        if degraded.exchange(false, ordering: .relaxed) {
            logger.info("rate limiter: Redis is back, limits are shared again")
        }
        return RateLimitDecision(allowed: allowed == 1, remaining: Int(remaining), retryAfter: retryAfter, resetAfter: reset)
    }
}

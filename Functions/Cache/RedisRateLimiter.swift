import Crypto
import FunctionRuntime
import Logging
import ServiceLifecycle
import Synchronization

/// The shared GCRA limiter, taken in small reservations. Each instance reserves a slice of a key's
/// budget from Redis in one script call (`EVALSHA`, loaded with `EVAL` on `NOSCRIPT`; Redis' own
/// clock, so instances with skewed clocks agree; no module, so managed Redis works), spends it
/// locally, and gives back what its lease did not use on its next call for that key. A denial is
/// remembered until Redis said a token frees up, so a client hammering over its budget costs no
/// Redis call either. Together the instances never admit more than the budget; an instance may
/// refuse a little early while others hold unused slices (at most `slice` per instance — within
/// the burst). When Redis does not answer, every instance limits alone with the budget divided by
/// `INSTANCE_COUNT_HINT` — a cache outage neither opens the gates nor stops the service — and the
/// next call that reaches Redis switches back.
final class RedisRateLimiter: RateLimiter {
    /// KEYS[1]; ARGV: interval (µs), burst, tokens wanted, tokens given back.
    /// Returns {granted, remaining after the grant, µs until one token frees up (0 when granted), µs until the burst is full}.
    static let script = """
        if redis.replicate_commands then pcall(redis.replicate_commands) end
        local interval = tonumber(ARGV[1])
        local capacity = interval * tonumber(ARGV[2])
        local want = tonumber(ARGV[3])
        local back = tonumber(ARGV[4])
        local clock = redis.call('TIME')
        local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
        local tat = tonumber(redis.call('GET', KEYS[1]) or now)
        if back > 0 then tat = tat - back * interval end
        if tat < now then tat = now end
        local fit = math.floor((capacity - (tat - now)) / interval)
        if fit > want then fit = want end
        if fit <= 0 then
          if back > 0 then redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.max(1, math.ceil((tat - now) / 1000))) end
          return {0, 0, interval - (capacity - (tat - now)), tat - now}
        end
        local next = tat + fit * interval
        redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.max(1, math.ceil((next - now) / 1000)))
        return {fit, math.floor((capacity - (next - now)) / interval), 0, next - now}
        """
    static let scriptSHA = Hex.encode(Insecure.SHA1.hash(data: Array(script.utf8)))

    /// What this instance holds for one key.
    struct Lease {
        var tokens = 0
        /// Local µs after which unused tokens go back to Redis.
        var expiresAt: Int64 = 0
        /// Redis' remaining and reset as of the last reservation.
        var remaining = 0
        var resetAt: Int64 = 0
        /// Local µs until which every check is refused without asking Redis.
        var deniedUntil: Int64 = 0
    }

    let policy: RateLimitPolicy
    /// Tokens asked for per reservation.
    let slice: Int
    let leaseMicros: Int64
    private let client: RedisClient
    private let fallback: InProcessRateLimiter
    private let logger: Logger
    private let degraded = Atomic<Bool>(false)
    private let leases = Mutex<[String: Lease]>([:])
    private let capacity: Int
    private let clock: @Sendable () -> Int64

    /// `slice` defaults to burst / (8 × instances), 1…64: small against the burst, so other
    /// instances are rarely refused early, and large enough that a hot key costs one Redis call per
    /// up to 64 requests.
    init(
        client: RedisClient, policy: RateLimitPolicy, instanceCountHint: Int, logger: Logger, slice: Int? = nil,
        lease: Duration = .seconds(1), capacity: Int = 100_000, clock: @escaping @Sendable () -> Int64 = RateLimitClock.microseconds
    ) {
        self.client = client
        self.policy = policy
        self.slice = min(64, max(1, slice ?? policy.burst / (8 * max(1, instanceCountHint))))
        self.leaseMicros = max(1, Int64(lease.components.seconds) * 1_000_000 + lease.components.attoseconds / 1_000_000_000_000)
        self.fallback = InProcessRateLimiter(policy: policy.divided(by: instanceCountHint))
        self.logger = logger
        self.capacity = capacity
        self.clock = clock
    }

    var isDegraded: Bool { degraded.load(ordering: .relaxed) }

    /// What `check` does without Redis: spend a held token, repeat a remembered denial, or say how
    /// many expired tokens to give back with the next reservation.
    private enum Local {
        case decided(RateLimitDecision)
        case reserve(giveBack: Int)
    }

    func check(_ key: String) async -> RateLimitDecision {
        let now = clock()
        let local: Local = leases.withLock { map in
            guard var lease = map[key] else { return .reserve(giveBack: 0) }
            if lease.deniedUntil > now {
                return .decided(RateLimitDecision(allowed: false, remaining: 0, retryAfter: lease.deniedUntil - now, resetAfter: max(0, lease.resetAt - now)))
            }
            if lease.tokens > 0, lease.expiresAt > now {
                lease.tokens -= 1
                map[key] = lease
                return .decided(RateLimitDecision(
                    allowed: true, remaining: lease.remaining + lease.tokens, retryAfter: 0, resetAfter: max(0, lease.resetAt - now)))
            }
            let giveBack = lease.tokens
            lease.tokens = 0
            map[key] = lease
            return .reserve(giveBack: giveBack)
        }
        switch local {
        case .decided(let decision): return decision
        case .reserve(let giveBack): return await reserve(key, giveBack: giveBack, now: now)
        }
    }

    /// Every held token back to Redis (a draining instance should not sit on budget).
    func returnAll() async {
        let held: [(String, Int)] = leases.withLock { map in
            defer { map.removeAll() }
            return map.compactMap { $0.value.tokens > 0 ? ($0.key, $0.value.tokens) : nil }
        }
        for (key, tokens) in held { _ = try? await script(key, want: 0, giveBack: tokens) }
    }

    private func script(_ key: String, want: Int, giveBack: Int) async throws(RedisError) -> RedisValue {
        let arguments = [key, "\(policy.emissionInterval)", "\(policy.burst)", "\(want)", "\(giveBack)"].map { Array($0.utf8) }
        do {
            return try await client.command([Array("EVALSHA".utf8), Array(Self.scriptSHA.utf8), Array("1".utf8)] + arguments)
        } catch .reply(let message) where message.hasPrefix("NOSCRIPT") {
            return try await client.command([Array("EVAL".utf8), Array(Self.script.utf8), Array("1".utf8)] + arguments)
        }
    }

    private func reserve(_ key: String, giveBack: Int, now: Int64) async -> RateLimitDecision {
        let reply: RedisValue
        do {
            reply = try await script(key, want: slice, giveBack: giveBack)
        } catch {
            if !degraded.exchange(true, ordering: .relaxed) {
                logger.warning("rate limiter: Redis unavailable, each instance limits alone", metadata: ["reason": .string(error.description)])
            }
            return await fallback.check(key)
        }
        guard case .array(let values) = reply, values.count == 4, let granted = values[0].integer, let remaining = values[1].integer,
            let retryAfter = values[2].integer, let reset = values[3].integer, (0...Int64(slice)).contains(granted),
            (0...Int64(policy.burst)).contains(remaining), retryAfter >= 0, reset >= 0
        else {
            // An answer we do not understand: limit locally rather than let everything through.
            return await fallback.check(key)
        }
        if degraded.exchange(false, ordering: .relaxed) {
            logger.info("rate limiter: Redis is back, limits are shared again")
        }
        let resetAt = now + min(reset, Int64(policy.burst) * policy.emissionInterval)
        return leases.withLock { map in
            if map.count >= capacity, map[key] == nil {
                map = map.filter { $0.value.tokens > 0 || $0.value.deniedUntil > now }
                if map.count >= capacity { map.removeAll(keepingCapacity: true) }
            }
            var lease = map[key] ?? Lease()
            lease.remaining = Int(remaining)
            lease.resetAt = resetAt
            guard granted > 0 else {
                lease.deniedUntil = now + min(retryAfter, Int64(policy.burst) * policy.emissionInterval)
                map[key] = lease
                return RateLimitDecision(allowed: false, remaining: 0, retryAfter: retryAfter, resetAfter: reset)
            }
            // Concurrent reservations for one key add up: a slice is never overwritten (and so never lost).
            lease.tokens += Int(granted) - 1
            lease.expiresAt = now + leaseMicros
            lease.deniedUntil = 0
            map[key] = lease
            return RateLimitDecision(allowed: true, remaining: Int(remaining) + lease.tokens, retryAfter: 0, resetAfter: reset)
        }
    }
}

/// Gives every held rate-limit reservation back when the instance drains.
struct RateLimitReservations: Service {
    let limiter: RedisRateLimiter

    func run() async throws {
        try? await gracefulShutdown()
        await limiter.returnAll()
    }
}

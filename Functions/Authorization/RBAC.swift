import CoreMetrics
import AsyncHTTPClient
import Foundation
import FunctionRuntime
import Logging
import Synchronization

/// The host's answer to `GET {HOST_RBAC_API_URL}/rbac/effective?tenant_id=T&user_id=SUB` (docs/identity.md).
struct RBACAnswer: Sendable, Codable, Equatable {
    struct Assurance: Sendable, Codable, Equatable {
        var mfa: Bool?
        var level: String?
    }

    /// The ids as the host wrote them; compared on bytes (`isFor`), never as `String`s.
    var tenantID: String
    var userID: String
    var permissions: [String]
    var groups: [String]
    /// Bounded when decoded: 0 … 1 day (a larger or negative figure from outside never traps).
    var ttlSeconds: Int?
    var assurance: Assurance?

    enum CodingKeys: String, CodingKey {
        case permissions, groups, assurance
        case tenantID = "tenant_id"
        case userID = "user_id"
        case ttlSeconds = "ttl_seconds"
    }

    static let maxTTLSeconds = 86_400

    init(
        tenantID: String, userID: String, permissions: [String], groups: [String] = [], ttlSeconds: Int? = nil,
        assurance: Assurance? = nil
    ) {
        self.tenantID = tenantID
        self.userID = userID
        self.permissions = permissions
        self.groups = groups
        self.ttlSeconds = ttlSeconds
        self.assurance = assurance
    }

    /// No permission at all: what a host denial (403/404) means.
    static func none(tenant: TenantID, user: UserID) -> RBACAnswer {
        RBACAnswer(tenantID: tenant.text, userID: user.text, permissions: [])
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tenantID = try container.decode(String.self, forKey: .tenantID)
        userID = try container.decode(String.self, forKey: .userID)
        permissions = try container.decodeIfPresent([String].self, forKey: .permissions) ?? []
        groups = try container.decodeIfPresent([String].self, forKey: .groups) ?? []
        if let ttl = try container.decodeIfPresent(Double.self, forKey: .ttlSeconds) {
            ttlSeconds = ttl.isFinite ? Int(min(max(ttl, 0), Double(Self.maxTTLSeconds))) : nil
        }
        assurance = try container.decodeIfPresent(Assurance.self, forKey: .assurance)
    }

    /// Whether this answer is about exactly this tenant and user, byte for byte.
    func isFor(tenant: TenantID, user: UserID) -> Bool {
        tenantID.utf8.elementsEqual(tenant.text.utf8) && userID.utf8.elementsEqual(user.text.utf8)
    }
}

/// Why the host gave no permissions answer.
struct RBACFetchError: Error, Sendable, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        /// Timeout, connection failure, 5xx, 429, an unreadable answer: degrade (docs/identity.md).
        case unavailable
        /// 403/404, or an answer about someone else: the user holds nothing, and cached entries go.
        case denied
        /// 401: our API key was refused; a configuration error, never served from stale entries.
        case misconfigured
    }

    let kind: Kind
    let description: String

    init(_ kind: Kind = .unavailable, description: String) {
        self.kind = kind
        self.description = description
    }

    init(description: String) { self.init(.unavailable, description: description) }
}

/// Where effective permissions come from: the host's RBAC API, or the development host.
protocol RBACSource: Sendable {
    func effective(tenant: TenantID, user: UserID) async throws(RBACFetchError) -> RBACAnswer
}

/// The host RBAC API over HTTP: `Authorization: Bearer HOST_RBAC_API_KEY`, 2 s deadline.
struct HostRBACClient: RBACSource {
    let baseURL: String
    let apiKey: String?
    let http: OutboundHTTP
    let timeout: Duration

    init(baseURL: String, apiKey: String?, http: OutboundHTTP = OutboundHTTP(), timeout: Duration = .seconds(2)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.http = http
        self.timeout = timeout
    }

    /// The query with both ids strictly percent-encoded (every byte outside RFC 3986's unreserved
    /// set, `+` and `%` included), so no host decoding rule can read another id.
    static func query(tenant: TenantID, user: UserID) -> String {
        "?tenant_id=" + CacheKey.encode(tenant.text.utf8) + "&user_id=" + CacheKey.encode(user.text.utf8)
    }

    func effective(tenant: TenantID, user: UserID) async throws(RBACFetchError) -> RBACAnswer {
        var request = HTTPClientRequest(url: baseURL + "/rbac/effective" + Self.query(tenant: tenant, user: user))
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.headers.add(name: "Accept", value: "application/json")
        let reply: OutboundHTTP.Reply
        do {
            reply = try await http.send(request, timeout: timeout, maxBody: 256 * 1024)
        } catch {
            throw RBACFetchError(description: "host RBAC \(error.description)")
        }
        switch reply.status {
        case 200: break
        case 401: throw RBACFetchError(.misconfigured, description: "host RBAC refused our API key (401)")
        case 403, 404: throw RBACFetchError(.denied, description: "host RBAC answered \(reply.status)")
        default: throw RBACFetchError(description: "host RBAC answered \(reply.status)")
        }
        guard let answer = try? JSONDecoder().decode(RBACAnswer.self, from: Data(reply.body.readableBytesView)) else {
            throw RBACFetchError(description: "host RBAC answer is not the documented shape")
        }
        // An answer about someone else is no answer for this user: they hold nothing.
        guard answer.isFor(tenant: tenant, user: user) else {
            throw RBACFetchError(.denied, description: "host RBAC answered for another tenant or user")
        }
        return answer
    }
}

/// Effective permissions with two cache layers and graceful degradation (docs/identity.md):
/// - L1: per instance, a few seconds, so the hot path never leaves the process; dropped at once
///   when a purge is published.
/// - L2: the shared cache under `CacheKey.make("rbac", tenant, user)`, kept `RBAC_STALE_MAX_SECONDS`,
///   holding `fetched_at` and the host's `ttl_seconds`, sealed by the `SignedCache` around it.
/// - Fresh for `ttl_seconds` (else `RBAC_CACHE_TTL_SECONDS`); concurrent misses share one host call.
/// - Host down: an entry younger than the stale limit serves read-only actions; everything else
///   is `RBAC_UNAVAILABLE`. A shared-cache outage alone never denies: the host is asked directly.
/// - Host 403/404 (or an answer about someone else): no permission, and every cached entry of
///   the user is dropped. Host 401: `RBAC_UNAVAILABLE` and an error line (our key is wrong).
/// - Every purge moves a generation; an answer fetched under an older generation is handed to
///   the request that asked but never stored, so a purge cannot be undone by a fetch in flight.
/// - Every purge is recorded in the database first (`rbac_purges`, read back by every instance at start and twice a
///   second), and an answer is bound to it: one asked for before the latest purge covering it (`PurgeList`) is never
///   used, so an entry sealed before the purge and put back into Redis afterwards is ignored on every instance.
final class RBACService: Sendable {
    struct Entry: Sendable, Codable {
        var answer: RBACAnswer
        var fetchedAt: Double

        enum CodingKeys: String, CodingKey {
            case answer
            case fetchedAt = "fetched_at"
        }
    }

    struct Resolution: Sendable {
        let answer: RBACAnswer
        let degraded: Bool
        /// The host said this user has no access (403/404/someone else): nothing may grant anything,
        /// not even a super-admin claim in the token.
        var denied = false
    }

    enum Failure: Error, Sendable {
        /// The host failed and no entry may serve this action.
        case unavailable(String)
    }

    private struct LocalEntry {
        var entry: Entry
        var localUntil: ContinuousClock.Instant
    }

    static let purgeChannel = "fnhost:rbac-purge"

    private let source: any RBACSource
    private let cache: any KeyValueCache
    private let audit: any AuditSink
    private let logger: Logger
    private let defaultTTL: Double
    private let staleMax: Double
    private let localTTL: Duration
    private let now: @Sendable () -> Double
    private let local = Mutex<[String: LocalEntry]>([:])
    private let inFlight = Mutex<[String: Task<Result<Entry, RBACFetchError>, Never>]>([:])
    private let cacheHealthy = Atomic<Bool>(true)
    /// The purges in force, from this instance, pub/sub and the database.
    let purges = PurgeList()
    /// Where purges are recorded (the database); nil only in tests of the cache layers alone.
    private let purgeTable: (any RevocationTable)?
    /// Purge generations per tenant (a purge of one user moves its tenant's): a fetch stores its
    /// answer only if its tenant's generation did not move while it was in flight. Bounded: when
    /// the map is full it is cleared and the epoch moves, which also changes every generation.
    private let generations = Mutex<(epoch: Int, byTenant: [String: Int])>((0, [:]))

    struct Generation: Equatable {
        let epoch: Int
        let count: Int
    }

    private func generation(_ tenantKey: String) -> Generation {
        generations.withLock { Generation(epoch: $0.epoch, count: $0.byTenant[tenantKey] ?? 0) }
    }

    private func bumpGeneration(_ tenantKey: String) {
        generations.withLock { state in
            if state.byTenant.count >= 100_000 {
                state.byTenant.removeAll(keepingCapacity: true)
                state.epoch += 1
            }
            state.byTenant[tenantKey, default: 0] += 1
        }
    }

    /// `fnhost_rbac_lookups_total{source}`: where each answer came from (`l1`, `l2`, `host`,
    /// `stale`), so the cache hit rate the launch checklist asks for (> 90 %) can be watched.
    private let lookups: [String: CoreMetrics.Counter]

    init(
        source: any RBACSource, cache: any KeyValueCache, audit: any AuditSink, logger: Logger, defaultTTL: Double = 180,
        staleMax: Double = 600, localTTL: Duration = .seconds(5), now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
        metrics: any MetricsFactory = NOOPMetricsHandler.instance, purgeTable: (any RevocationTable)? = nil
    ) {
        self.purgeTable = purgeTable
        var lookups: [String: CoreMetrics.Counter] = [:]
        for source in ["l1", "l2", "host", "stale"] {
            lookups[source] = CoreMetrics.Counter(label: "fnhost_rbac_lookups_total", dimensions: [("source", source)], factory: metrics)
        }
        self.lookups = lookups
        self.source = source
        self.cache = cache
        self.audit = audit
        self.logger = logger
        self.defaultTTL = defaultTTL
        self.staleMax = staleMax
        self.localTTL = localTTL
        self.now = now
    }

    /// The entry's key: both ids percent-encoded, so no two (tenant, user) pairs share one.
    static func key(tenant: TenantID, user: UserID) -> String { CacheKey.make("rbac", tenant.bytes, user.bytes) }

    /// Every key of one tenant starts with this (and no key of another tenant does).
    static func tenantPrefix(_ tenant: TenantID) -> String { CacheKey.prefix("rbac", tenant.bytes) }

    /// Whether the shared cache answered the last time it was asked (for `/health/ready`).
    var sharedCacheHealthy: Bool { cacheHealthy.load(ordering: .relaxed) }

    func resolve(tenant: TenantID, user: UserID, readOnly: Bool) async throws(Failure) -> Resolution {
        let key = Self.key(tenant: tenant, user: user)
        let instant = ContinuousClock.now
        var stale: Entry?
        if let cached = local.withLock({ $0[key] }) {
            if cached.localUntil > instant, isFresh(cached.entry) {
                lookups["l1"]?.increment()
                return Resolution(answer: cached.entry.answer, degraded: false)
            }
            stale = cached.entry
        }
        do {
            if let bytes = try await cache.get(key), let entry = try? JSONDecoder().decode(Entry.self, from: Data(bytes)),
                entry.answer.isFor(tenant: tenant, user: user), entry.fetchedAt.isFinite,
                purges.permits(fetchedAt: entry.fetchedAt, tenant: tenant, user: user)
            {
                cacheHealthy.store(true, ordering: .relaxed)
                if isFresh(entry) {
                    remember(key, entry, tenantKey: Self.tenantPrefix(tenant), generation: generation(Self.tenantPrefix(tenant)))
                    lookups["l2"]?.increment()
                    return Resolution(answer: entry.answer, degraded: false)
                }
                if stale.map({ $0.fetchedAt < entry.fetchedAt }) ?? true { stale = entry }
            } else {
                cacheHealthy.store(true, ordering: .relaxed)
            }
        } catch {
            cacheHealthy.store(false, ordering: .relaxed)
        }
        switch await fetch(key: key, tenant: tenant, user: user) {
        case .success(let entry):
            lookups["host"]?.increment()
            return Resolution(answer: entry.answer, degraded: false)
        case .failure(let error) where error.kind == .denied:
            await forget(key, tenant: tenant)
            return Resolution(answer: .none(tenant: tenant, user: user), degraded: false, denied: true)
        case .failure(let error) where error.kind == .misconfigured:
            logger.error("host RBAC refused the module's API key; check HOST_RBAC_API_KEY", metadata: ["reason": .string(error.description)])
            throw .unavailable(error.description)
        case .failure(let error):
            if readOnly, let stale, now() - stale.fetchedAt < staleMax {
                logger.warning(
                    "RBAC host unavailable; serving a stale entry to a read-only action",
                    metadata: ["tenant_id": .string(tenant.text), "age_seconds": .stringConvertible(Int(max(0, min(now() - stale.fetchedAt, 1e9))))])
                lookups["stale"]?.increment()
                return Resolution(answer: stale.answer, degraded: true)
            }
            throw .unavailable(error.description)
        }
    }

    /// One host call per key at a time; the result is stored in both layers unless a purge
    /// happened while it was in flight.
    private func fetch(key: String, tenant: TenantID, user: UserID) async -> Result<Entry, RBACFetchError> {
        let task = inFlight.withLock { tasks -> Task<Result<Entry, RBACFetchError>, Never> in
            if let existing = tasks[key] { return existing }
            let tenantKey = Self.tenantPrefix(tenant)
            let generation = generation(tenantKey)
            let task = Task { [self] () -> Result<Entry, RBACFetchError> in
                defer { _ = inFlight.withLock { $0.removeValue(forKey: key) } }
                do throws(RBACFetchError) {
                    // Stamped when asked, not when answered: an answer asked for before a purge is older than it.
                    let askedAt = now()
                    let answer = try await source.effective(tenant: tenant, user: user)
                    let entry = Entry(answer: answer, fetchedAt: askedAt)
                    if remember(key, entry, tenantKey: tenantKey, generation: generation), let bytes = try? JSONEncoder().encode(entry) {
                        do {
                            try await cache.set(key, Array(bytes), ttl: .seconds(staleMax))
                            cacheHealthy.store(true, ordering: .relaxed)
                            // A purge that landed during the write: take the write back.
                            if self.generation(tenantKey) != generation { _ = try? await cache.delete([key]) }
                        } catch {
                            cacheHealthy.store(false, ordering: .relaxed)
                        }
                    }
                    await audit.record(
                        AuditRecord(
                            tenantID: tenant, actorSub: user, actorEmail: nil, eventType: "RBAC_FETCHED", severity: .info,
                            details: ["permissions": .number(Double(answer.permissions.count))]))
                    return .success(entry)
                } catch {
                    await audit.record(
                        AuditRecord(
                            tenantID: tenant, actorSub: user, actorEmail: nil, eventType: "RBAC_FETCH_FAILED", severity: .warning,
                            details: ["reason": .string(error.description)]))
                    return .failure(error)
                }
            }
            tasks[key] = task
            return task
        }
        return await task.value
    }

    private func isFresh(_ entry: Entry) -> Bool {
        let ttl = entry.answer.ttlSeconds.map { min(Double(max($0, 0)), staleMax) } ?? defaultTTL
        return now() - entry.fetchedAt < ttl
    }

    /// Stores in L1 when no purge happened since `generation` was read; false when one did.
    @discardableResult
    private func remember(_ key: String, _ entry: Entry, tenantKey: String, generation: Generation) -> Bool {
        let until = ContinuousClock.now + localTTL
        return local.withLock { map in
            // Read under the lock that purges also take, so a purge cannot slip between check and store.
            guard self.generation(tenantKey) == generation else { return false }
            if map.count > 50_000 { map.removeAll(keepingCapacity: true) }
            map[key] = LocalEntry(entry: entry, localUntil: until)
            return true
        }
    }

    /// A denial: drop both layers for this user (best effort on the shared one).
    private func forget(_ key: String, tenant: TenantID) async {
        local.withLock { map in
            bumpGeneration(Self.tenantPrefix(tenant))
            map[key] = nil
        }
        _ = try? await cache.delete([key])
    }

    /// Drops this instance's copies: one user, or every user of the tenant.
    func dropLocal(tenant: TenantID, user: UserID?) {
        local.withLock { map in
            bumpGeneration(Self.tenantPrefix(tenant))
            if let user {
                map[Self.key(tenant: tenant, user: user)] = nil
            } else {
                let prefix = Self.tenantPrefix(tenant)
                for key in map.keys where key.hasPrefix(prefix) { map[key] = nil }
            }
        }
    }

    /// Records the purge in the database (throws when it was not recorded: nothing was purged), applies it here, then
    /// removes the shared entries and tells every instance through the cache. Once recorded, the cache steps are a
    /// courtesy: an entry they miss is refused anyway (it predates the record), so their failure is only logged.
    /// Without a database table (tests of the cache layers), the cache steps are the purge and their failure throws.
    func purge(tenant: TenantID, user: UserID?) async throws(PurgeFailure) -> Int {
        let at = now()
        if let purgeTable {
            let record = PurgeRecord(tenant: tenant, user: user, purgedAt: at, expiresAt: Int64(at + staleMax) + 120)
            do {
                try await purgeTable.storePurge(record)
            } catch {
                throw PurgeFailure(description: error.description)
            }
        }
        purges.apply(tenant: tenant, user: user, at: at)
        dropLocal(tenant: tenant, user: user)
        do {
            let removed: Int
            if let user {
                removed = try await cache.delete([Self.key(tenant: tenant, user: user)])
            } else {
                removed = try await cache.deletePrefix(Self.tenantPrefix(tenant))
            }
            try await cache.publish(Self.purgeChannel, Self.purgeMessage(tenant: tenant, user: user))
            return removed
        } catch {
            guard purgeTable != nil else { throw PurgeFailure(description: error.description) }
            logger.warning(
                "rbac purge recorded but the shared cache was not cleared; its entries are refused anyway",
                metadata: ["reason": .string(error.description)])
            return 0
        }
    }

    /// Purges read from the database: each one newer than this instance knew drops the local copies it covers; purges
    /// too old to matter are forgotten.
    func synchronizePurges(_ records: [PurgeRecord]) {
        for record in records where purges.apply(tenant: record.tenant, user: record.user, at: record.purgedAt) {
            dropLocal(tenant: record.tenant, user: record.user)
        }
        purges.prune(before: now() - staleMax - PurgeList.clockSkew - 60)
    }

    /// `enc(tenant):enc(user)` (user empty for the whole tenant), percent-encoded like keys.
    static func purgeMessage(tenant: TenantID, user: UserID?) -> String {
        CacheKey.encode(tenant.text.utf8) + ":" + (user.map { CacheKey.encode($0.text.utf8) } ?? "")
    }

    /// Applies a purge heard on the channel; anything that does not decode is ignored.
    func applyPurgeMessage(_ message: String) {
        let parts = message.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let tenantBytes = CacheKey.decode(parts[0]), let userBytes = CacheKey.decode(parts[1]),
            let tenant = TenantID(validating: String(decoding: tenantBytes, as: UTF8.self))
        else { return }
        let user = userBytes.isEmpty ? nil : UserID(validating: String(decoding: userBytes, as: UTF8.self))
        if !userBytes.isEmpty, user == nil { return }
        // Recorded at the time heard (no later than the purge's own record): the database poll brings the exact time.
        purges.apply(tenant: tenant, user: user, at: now())
        dropLocal(tenant: tenant, user: user)
    }
}

/// A purge that was not applied (the database did not record it, or, without one, the cache failed).
struct PurgeFailure: Error, Sendable, CustomStringConvertible {
    let description: String
}

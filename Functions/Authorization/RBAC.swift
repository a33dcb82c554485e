import AsyncHTTPClient
import Foundation
import FunctionRuntime
import Logging
import Synchronization

/// The host's answer to `GET {HOST_RBAC_API_URL}/rbac/effective?tenant_id=T&user_id=SUB` (SPEC §6).
struct RBACAnswer: Sendable, Codable, Equatable {
    struct Assurance: Sendable, Codable, Equatable {
        var mfa: Bool?
        var level: String?
    }

    var tenantID: String
    var userID: String
    var permissions: [String]
    var groups: [String]
    var ttlSeconds: Int?
    var assurance: Assurance?

    enum CodingKeys: String, CodingKey {
        case permissions, groups, assurance
        case tenantID = "tenant_id"
        case userID = "user_id"
        case ttlSeconds = "ttl_seconds"
    }

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

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tenantID = try container.decode(String.self, forKey: .tenantID)
        userID = try container.decode(String.self, forKey: .userID)
        permissions = try container.decodeIfPresent([String].self, forKey: .permissions) ?? []
        groups = try container.decodeIfPresent([String].self, forKey: .groups) ?? []
        ttlSeconds = try container.decodeIfPresent(Int.self, forKey: .ttlSeconds)
        assurance = try container.decodeIfPresent(Assurance.self, forKey: .assurance)
    }
}

struct RBACFetchError: Error, Sendable, CustomStringConvertible {
    let description: String
}

/// Where effective permissions come from: the host's RBAC API, or the development host.
protocol RBACSource: Sendable {
    func effective(tenant: String, user: String) async throws(RBACFetchError) -> RBACAnswer
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

    func effective(tenant: String, user: String) async throws(RBACFetchError) -> RBACAnswer {
        var components = URLComponents()
        components.queryItems = [URLQueryItem(name: "tenant_id", value: tenant), URLQueryItem(name: "user_id", value: user)]
        var request = HTTPClientRequest(url: baseURL + "/rbac/effective" + (components.string ?? ""))
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.headers.add(name: "Accept", value: "application/json")
        let reply: OutboundHTTP.Reply
        do {
            reply = try await http.send(request, timeout: timeout, maxBody: 256 * 1024)
        } catch {
            throw RBACFetchError(description: "host RBAC \(error.description)")
        }
        guard reply.status == 200 else { throw RBACFetchError(description: "host RBAC answered \(reply.status)") }
        guard let answer = try? JSONDecoder().decode(RBACAnswer.self, from: Data(reply.body.readableBytesView)) else {
            throw RBACFetchError(description: "host RBAC answer is not the documented shape")
        }
        // An answer about someone else is no answer.
        guard answer.tenantID == tenant, answer.userID == user else {
            throw RBACFetchError(description: "host RBAC answered for another tenant or user")
        }
        return answer
    }
}

/// Effective permissions with two cache layers and graceful degradation (SPEC §6):
/// - L1: per instance, a few seconds, so the hot path never leaves the process; dropped at once
///   when a purge is published.
/// - L2: the shared cache under `rbac:{tenant}:{user}`, kept `RBAC_STALE_MAX_SECONDS`, holding
///   `fetched_at` and the host's `ttl_seconds`.
/// - Fresh for `ttl_seconds` (else `RBAC_CACHE_TTL_SECONDS`); concurrent misses share one host call.
/// - Host down: an entry younger than the stale limit serves read-only actions; everything else
///   is `RBAC_UNAVAILABLE`. A shared-cache outage alone never denies: the host is asked directly.
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

    init(
        source: any RBACSource, cache: any KeyValueCache, audit: any AuditSink, logger: Logger, defaultTTL: Double = 180,
        staleMax: Double = 600, localTTL: Duration = .seconds(5), now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.source = source
        self.cache = cache
        self.audit = audit
        self.logger = logger
        self.defaultTTL = defaultTTL
        self.staleMax = staleMax
        self.localTTL = localTTL
        self.now = now
    }

    static func key(tenant: String, user: String) -> String { "rbac:\(tenant):\(user)" }

    /// Whether the shared cache answered the last time it was asked (for `/health/ready`).
    var sharedCacheHealthy: Bool { cacheHealthy.load(ordering: .relaxed) }

    func resolve(tenant: String, user: String, readOnly: Bool) async throws(Failure) -> Resolution {
        let key = Self.key(tenant: tenant, user: user)
        let instant = ContinuousClock.now
        var stale: Entry?
        if let cached = local.withLock({ $0[key] }) {
            if cached.localUntil > instant, isFresh(cached.entry) { return Resolution(answer: cached.entry.answer, degraded: false) }
            stale = cached.entry
        }
        do {
            if let bytes = try await cache.get(key), let entry = try? JSONDecoder().decode(Entry.self, from: Data(bytes)),
                entry.answer.tenantID == tenant, entry.answer.userID == user
            {
                cacheHealthy.store(true, ordering: .relaxed)
                if isFresh(entry) {
                    remember(key, entry)
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
            return Resolution(answer: entry.answer, degraded: false)
        case .failure(let error):
            if readOnly, let stale, now() - stale.fetchedAt < staleMax {
                logger.warning(
                    "RBAC host unavailable; serving a stale entry to a read-only action",
                    metadata: ["tenant_id": .string(tenant), "age_seconds": .stringConvertible(Int(now() - stale.fetchedAt))])
                return Resolution(answer: stale.answer, degraded: true)
            }
            throw .unavailable(error.description)
        }
    }

    /// One host call per key at a time; the result is stored in both layers.
    private func fetch(key: String, tenant: String, user: String) async -> Result<Entry, RBACFetchError> {
        let task = inFlight.withLock { tasks -> Task<Result<Entry, RBACFetchError>, Never> in
            if let existing = tasks[key] { return existing }
            let task = Task { [self] () -> Result<Entry, RBACFetchError> in
                defer { _ = inFlight.withLock { $0.removeValue(forKey: key) } }
                do throws(RBACFetchError) {
                    let answer = try await source.effective(tenant: tenant, user: user)
                    let entry = Entry(answer: answer, fetchedAt: now())
                    remember(key, entry)
                    if let bytes = try? JSONEncoder().encode(entry) {
                        do {
                            try await cache.set(key, Array(bytes), ttl: .seconds(staleMax))
                            cacheHealthy.store(true, ordering: .relaxed)
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

    private func remember(_ key: String, _ entry: Entry) {
        let until = ContinuousClock.now + localTTL
        local.withLock { map in
            if map.count > 50_000 { map.removeAll(keepingCapacity: true) }
            map[key] = LocalEntry(entry: entry, localUntil: until)
        }
    }

    /// Drops this instance's copies: one user, or every user of the tenant.
    func dropLocal(tenant: String, user: String?) {
        local.withLock { map in
            if let user {
                map[Self.key(tenant: tenant, user: user)] = nil
            } else {
                let prefix = "rbac:\(tenant):"
                for key in map.keys where key.hasPrefix(prefix) { map[key] = nil }
            }
        }
    }

    /// Purges the shared entries and tells every instance to drop its local copies.
    func purge(tenant: String, user: String?) async throws(CacheUnavailable) -> Int {
        dropLocal(tenant: tenant, user: user)
        let removed: Int
        if let user {
            removed = try await cache.delete([Self.key(tenant: tenant, user: user)])
        } else {
            removed = try await cache.deletePrefix("rbac:\(tenant):")
        }
        try await cache.publish(Self.purgeChannel, Self.purgeMessage(tenant: tenant, user: user))
        return removed
    }

    /// `tenant\nuser` (user empty for the whole tenant); a newline cannot occur in either id.
    static func purgeMessage(tenant: String, user: String?) -> String { tenant + "\n" + (user ?? "") }

    func applyPurgeMessage(_ message: String) {
        let parts = message.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        guard let tenant = parts.first, !tenant.isEmpty else { return }
        let user = parts.count == 2 && !parts[1].isEmpty ? String(parts[1]) : nil
        dropLocal(tenant: String(tenant), user: user)
    }
}

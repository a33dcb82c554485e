import CoreMetrics
import Foundation
import FunctionRuntime
import Logging
import ServiceLifecycle
import Synchronization

/// One revocation of docs/operations.md: a token (`jti`), a user's tokens or a tenant's tokens issued at or
/// before `revokedBefore` (unix seconds). Kept until `expiresAt`, when nothing it covers can still
/// be valid (`revokedBefore` + the longest lifetime + leeway).
struct Revocation: Sendable, Equatable {
    enum Scope: Sendable, Equatable {
        case token(jti: [UInt8])
        case user(UserID)
        case tenant
    }

    /// Tokens live at most 4 h and are accepted 60 s past `exp`; a little margin on top.
    static let keep: Int64 = 14_400 + 120

    let tenant: TenantID
    let scope: Scope
    let revokedBefore: Int64
    let expiresAt: Int64

    init(tenant: TenantID, scope: Scope, revokedBefore: Int64, now: Int64) {
        self.tenant = tenant
        self.scope = scope
        self.revokedBefore = revokedBefore
        // A token id is revoked whatever its `iat`: keep it as long as any token can live from now.
        switch scope {
        case .token: expiresAt = max(now, revokedBefore) + Self.keep
        case .user, .tenant: expiresAt = revokedBefore + Self.keep
        }
    }

    private init(tenant: TenantID, scope: Scope, revokedBefore: Int64, expiresAt: Int64) {
        self.tenant = tenant
        self.scope = scope
        self.revokedBefore = revokedBefore
        self.expiresAt = expiresAt
    }

    var scopeName: String {
        switch scope {
        case .token: "token"
        case .user: "user"
        case .tenant: "tenant"
        }
    }

    /// Where it is stored: one field per (scope, ids, `revoked_before`), so two revocations of one
    /// user never overwrite each other (the view keeps the later `revoked_before`).
    var field: String {
        switch scope {
        case .token(let jti): CacheKey.make("jti", tenant.bytes, jti)
        case .user(let user): CacheKey.make("user", tenant.bytes, user.bytes, Array(String(revokedBefore).utf8))
        case .tenant: CacheKey.make("tenant", tenant.bytes, Array(String(revokedBefore).utf8))
        }
    }

    /// `{"tenant_id", "scope", "user_id"|"jti", "revoked_before", "expires_at"}`; ids as JSON strings
    /// (the jti percent-encoded, so any bytes survive).
    var encoded: [UInt8] {
        var writer = JSONWriter(capacity: 160)
        writer.beginObject()
        writer.field("tenant_id", tenant.text)
        writer.field("scope", scopeName)
        switch scope {
        case .token(let jti): writer.field("jti", CacheKey.encode(jti))
        case .user(let user): writer.field("user_id", user.text)
        case .tenant: break
        }
        writer.field("revoked_before", Int(revokedBefore))
        writer.field("expires_at", Int(expiresAt))
        writer.endObject()
        return writer.bytes
    }

    /// The inverse of `encoded`; nil for anything else (entries are authenticated before this).
    init?(decoding bytes: [UInt8]) {
        guard let object = try? JSONReader.object(bytes),
            case .string(let tenantText)? = object["tenant_id"], let tenant = TenantID(validating: tenantText),
            case .string(let scopeName)? = object["scope"],
            case .number(let before)? = object["revoked_before"], let revokedBefore = Bounded.unixSeconds(before),
            case .number(let expires)? = object["expires_at"], let expiresAt = Bounded.unixSeconds(expires)
        else { return nil }
        let scope: Scope
        switch (scopeName, object["jti"], object["user_id"]) {
        case ("token", .string(let jti)?, _):
            guard let raw = CacheKey.decode(jti), !raw.isEmpty else { return nil }
            scope = .token(jti: raw)
        case ("user", _, .string(let userText)?):
            guard let user = UserID(validating: userText) else { return nil }
            scope = .user(user)
        case ("tenant", _, _):
            scope = .tenant
        default:
            return nil
        }
        self.init(tenant: tenant, scope: scope, revokedBefore: revokedBefore, expiresAt: expiresAt)
    }
}

extension Bounded {
    /// A whole number of unix seconds from 0 to the year 9999.
    static func unixSeconds(_ value: Double) -> Int64? {
        guard value.isFinite, value >= 0, value <= 253_402_300_799, value == value.rounded(.towardZero) else { return nil }
        return Int64(value)
    }
}

/// The in-process view every request consults (no I/O): filled by this instance's own webhook,
/// by pub/sub from the others and by a periodic re-synchronization with the shared store.
final class RevocationList: Sendable {
    private struct TenantEntry {
        var tenantBefore: Int64?
        var tenantExpires: Int64 = 0
        var users: [UserID: (before: Int64, expires: Int64)] = [:]
        var tokens: [[UInt8]: Int64] = [:]

        var isEmpty: Bool { tenantBefore == nil && users.isEmpty && tokens.isEmpty }

        mutating func prune(now: Int64) {
            if let _ = tenantBefore, tenantExpires <= now { tenantBefore = nil }
            users = users.filter { $0.value.expires > now }
            tokens = tokens.filter { $0.value > now }
        }
    }

    private let tenants = Mutex<[TenantID: TenantEntry]>([:])
    /// Lets the common case (nothing revoked anywhere) skip the lock.
    private let empty = Atomic<Bool>(true)

    init() {}

    /// True when the token is covered by a revocation still in force.
    func isRevoked(tenant: TenantID, subject: UserID, issuedAt: Double, jti: String?) -> Bool {
        if empty.load(ordering: .acquiring) { return false }
        return tenants.withLock { map in
            guard let entry = map[tenant] else { return false }
            if let before = entry.tenantBefore, issuedAt <= Double(before) { return true }
            if let user = entry.users[subject], issuedAt <= Double(user.before) { return true }
            if let jti, !entry.tokens.isEmpty, entry.tokens[Array(jti.utf8)] != nil { return true }
            return false
        }
    }

    func apply(_ revocations: some Sequence<Revocation>, now: Int64) {
        tenants.withLock { map in
            for revocation in revocations where revocation.expiresAt > now {
                var entry = map[revocation.tenant] ?? TenantEntry()
                switch revocation.scope {
                case .tenant:
                    entry.tenantBefore = max(entry.tenantBefore ?? .min, revocation.revokedBefore)
                    entry.tenantExpires = max(entry.tenantExpires, revocation.expiresAt)
                case .user(let user):
                    let known = entry.users[user]
                    entry.users[user] = (
                        max(known?.before ?? .min, revocation.revokedBefore), max(known?.expires ?? 0, revocation.expiresAt)
                    )
                case .token(let jti):
                    entry.tokens[jti] = max(entry.tokens[jti] ?? 0, revocation.expiresAt)
                }
                map[revocation.tenant] = entry
            }
            empty.store(map.isEmpty, ordering: .releasing)
        }
    }

    /// Forgets what can no longer cover a valid token.
    func prune(now: Int64) {
        tenants.withLock { map in
            for tenant in Array(map.keys) {
                map[tenant]?.prune(now: now)
                if map[tenant]?.isEmpty == true { map[tenant] = nil }
            }
            empty.store(map.isEmpty, ordering: .releasing)
        }
    }

    var count: Int {
        tenants.withLock { map in map.values.reduce(0) { $0 + ($1.tenantBefore == nil ? 0 : 1) + $1.users.count + $1.tokens.count } }
    }
}

/// Where revocations live so every instance reads them (docs/operations.md).
protocol RevocationStore: Sendable {
    /// Stores the revocation and tells the other instances; throws when either did not happen.
    func store(_ revocation: Revocation) async throws(CacheUnavailable)
    /// Every revocation still kept (authenticated ones only).
    func all(now: Int64) async throws(CacheUnavailable) -> [Revocation]
}

/// Revocations in Redis: one hash `revocations` (a field per revocation, each value sealed with
/// `CACHE_SIGNING_KEY` and bound to its field), expiring with its longest-lived entry, and a
/// pub/sub message (the sealed record, base64) so the other instances apply it at once.
struct SharedRevocationStore: RevocationStore {
    static let hashKey = CacheKey.make("revocations")
    static let channel = "fnhost:sessions-revoked"

    let client: RedisClient
    let sealer: SignedCache
    let logger: Logger

    func store(_ revocation: Revocation) async throws(CacheUnavailable) {
        let field = revocation.field
        let value = sealer.seal(revocation.encoded, key: Self.hashKey + "|" + field)
        let ttl = String(max(1, revocation.expiresAt - Int64(Date().timeIntervalSince1970)) * 1000)
        let key = Array(Self.hashKey.utf8)
        let replies: [RedisValue]
        do {
            replies = try await client.pipeline([
                [Array("HSET".utf8), key, Array(field.utf8), value],
                // NX sets a first expiry, GT only ever extends it.
                [Array("PEXPIRE".utf8), key, Array(ttl.utf8), Array("NX".utf8)],
                [Array("PEXPIRE".utf8), key, Array(ttl.utf8), Array("GT".utf8)],
                [Array("PUBLISH".utf8), Array(Self.channel.utf8), Array(Self.message(revocation, sealer: sealer).utf8)],
            ])
        } catch {
            throw CacheUnavailable(description: error.description)
        }
        for reply in replies {
            if case .error(let message) = reply { throw CacheUnavailable(description: "redis error: \(message)") }
        }
    }

    func all(now: Int64) async throws(CacheUnavailable) -> [Revocation] {
        let reply: RedisValue
        do {
            reply = try await client.command([Array("HGETALL".utf8), Array(Self.hashKey.utf8)])
        } catch {
            throw CacheUnavailable(description: error.description)
        }
        guard case .array(let parts) = reply, parts.count % 2 == 0 else {
            throw CacheUnavailable(description: "unexpected HGETALL reply")
        }
        var found: [Revocation] = []
        var expired: [[UInt8]] = []
        var index = 0
        while index + 1 < parts.count {
            defer { index += 2 }
            guard let fieldBytes = parts[index].bytes, let sealed = parts[index + 1].bytes else { continue }
            let field = String(decoding: fieldBytes, as: UTF8.self)
            guard let opened = sealer.open(sealed, key: Self.hashKey + "|" + field), let revocation = Revocation(decoding: opened),
                revocation.field.utf8.elementsEqual(fieldBytes)
            else {
                logger.warning("revocation entry failed authentication; ignored", metadata: ["field": .string(field)])
                continue
            }
            if revocation.expiresAt <= now { expired.append(fieldBytes) } else { found.append(revocation) }
        }
        if !expired.isEmpty {
            _ = try? await client.command([Array("HDEL".utf8), Array(Self.hashKey.utf8)] + expired)
        }
        return found
    }

    static func message(_ revocation: Revocation, sealer: SignedCache) -> String {
        Data(sealer.seal(revocation.encoded, key: channel)).base64EncodedString()
    }

    /// A message heard on the channel; nil (and logged) unless it carries our MAC.
    static func revocation(fromMessage message: String, sealer: SignedCache) -> Revocation? {
        guard message.utf8.count <= 4096, let data = Data(base64Encoded: message),
            let opened = sealer.open(Array(data), key: channel)
        else { return nil }
        return Revocation(decoding: opened)
    }
}

/// Revocation checks and bookkeeping shared by the webhook and the token verifier.
final class Revocations: Sendable {
    /// How long a revocation missed by pub/sub can go unseen: the re-synchronization period.
    static let resyncInterval: Duration = .seconds(5)

    let list: RevocationList
    let store: any RevocationStore
    private let refused: CoreMetrics.Counter
    private let stored: [String: CoreMetrics.Counter]

    init(store: any RevocationStore, metrics: any MetricsFactory) {
        list = RevocationList()
        self.store = store
        refused = CoreMetrics.Counter(label: "fnhost_revoked_tokens_refused_total", factory: metrics)
        var stored: [String: CoreMetrics.Counter] = [:]
        for scope in ["token", "user", "tenant"] {
            stored[scope] = CoreMetrics.Counter(label: "fnhost_revocations_stored_total", dimensions: [("scope", scope)], factory: metrics)
        }
        self.stored = stored
    }

    func isRevoked(_ identity: Identity) -> Bool {
        guard list.isRevoked(tenant: identity.tenantID, subject: identity.subject, issuedAt: identity.issuedAt, jti: identity.jti) else {
            return false
        }
        refused.increment()
        return true
    }

    /// Stores (and publishes) first; applied here only once that worked.
    func revoke(_ revocation: Revocation, now: Int64) async throws(CacheUnavailable) {
        try await store.store(revocation)
        list.apply([revocation], now: now)
        stored[revocation.scopeName]?.increment()
    }

    /// Pulls every stored revocation into the view (after a reconnect, and periodically).
    func resynchronize(now: Int64) async throws(CacheUnavailable) {
        let all = try await store.all(now: now)
        list.prune(now: now)
        list.apply(all, now: now)
    }
}

/// Keeps the in-process view in step with Redis: a subscription applies other instances'
/// revocations as they happen and re-synchronizes on every (re)subscription; a full
/// re-synchronization every `Revocations.resyncInterval` bounds what a lost message can cost.
struct RevocationSync: Service {
    let revocations: Revocations
    let client: RedisClient
    let sealer: SignedCache
    let logger: Logger

    func run() async throws {
        let subscriber = client.subscribe(
            channel: SharedRevocationStore.channel, logger: logger,
            onSubscribed: { [revocations, logger] in
                Task { await Self.resync(revocations, logger: logger) }
            },
            handler: { [revocations, sealer, logger] message in
                guard let revocation = SharedRevocationStore.revocation(fromMessage: message, sealer: sealer) else {
                    logger.warning("revocation message failed authentication; ignored")
                    return
                }
                revocations.list.apply([revocation], now: Int64(Date().timeIntervalSince1970))
            })
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await subscriber.run() }
            group.addTask { [revocations, logger] in
                while !Task.isShuttingDownGracefully && !Task.isCancelled {
                    await Self.resync(revocations, logger: logger)
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Revocations.resyncInterval) }
                }
            }
        }
    }

    private static func resync(_ revocations: Revocations, logger: Logger) async {
        do {
            try await revocations.resynchronize(now: Int64(Date().timeIntervalSince1970))
        } catch {
            logger.warning("revocations could not be re-synchronized", metadata: ["reason": .string(error.description)])
        }
    }
}

/// Revocations kept in the database (`session_revocations`), for instances sharing one without Redis.
protocol RevocationTable: Sendable {
    /// Stores the record under its field (a second store of the same field changes nothing).
    func storeRevocation(field: String, tenant: TenantID, record: [UInt8], expiresAt: Int64) async throws(StoreUnavailable)
    /// Every record still in force (read only: polled twice a second).
    func revocationRecords(now: Int64) async throws(StoreUnavailable) -> [[UInt8]]
    /// Removes what can no longer cover a valid token.
    func pruneRevocations(now: Int64) async throws(StoreUnavailable)
}

/// docs/operations.md without Redis: revocations in the database every instance shares; the other instances
/// see them at their next poll (`DatabaseRevocationSync`, every 500 ms, so within the 1 s).
struct DatabaseRevocationStore: RevocationStore {
    let table: any RevocationTable

    func store(_ revocation: Revocation) async throws(CacheUnavailable) {
        do {
            try await table.storeRevocation(
                field: revocation.field, tenant: revocation.tenant, record: revocation.encoded, expiresAt: revocation.expiresAt)
        } catch {
            throw CacheUnavailable(description: error.description)
        }
    }

    func all(now: Int64) async throws(CacheUnavailable) -> [Revocation] {
        do {
            return try await table.revocationRecords(now: now).compactMap(Revocation.init(decoding:))
        } catch {
            throw CacheUnavailable(description: error.description)
        }
    }
}

/// Polls the database for revocations made by other instances.
struct DatabaseRevocationSync: Service {
    let revocations: Revocations
    let logger: Logger
    var interval: Duration = .milliseconds(500)

    let table: any RevocationTable

    func run() async throws {
        var failing = false
        var polls = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let now = Int64(Date().timeIntervalSince1970)
                try await revocations.resynchronize(now: now)
                polls += 1
                if polls % 120 == 1 { try await table.pruneRevocations(now: now) }
                failing = false
            } catch {
                if !failing { logger.warning("revocations could not be read from the database", metadata: ["reason": .string("\(error)")]) }
                failing = true
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

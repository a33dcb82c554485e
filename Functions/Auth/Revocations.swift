import CoreMetrics
import Dispatch
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
/// by pub/sub from the others and by a periodic re-synchronization with the database.
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

/// The database tables every instance shares for what must outlive any cache (docs/operations.md): session
/// revocations (`session_revocations`) and RBAC purges (`rbac_purges`). The database is their record in every
/// configuration; Redis, when present, only carries the news faster.
protocol RevocationTable: Sendable {
    /// Stores the record under its field (a second store of the same field changes nothing).
    func storeRevocation(field: String, tenant: TenantID, record: [UInt8], expiresAt: Int64) async throws(StoreUnavailable)
    /// Every record still in force (read only: polled twice a second).
    func revocationRecords(now: Int64) async throws(StoreUnavailable) -> [[UInt8]]
    /// Removes revocations and purges that can no longer matter (the database's own clock decides what expired).
    func pruneRevocations(now: Int64) async throws(StoreUnavailable)
    /// Records a purge of one user's (or, `user` nil, a whole tenant's) RBAC answers at `purgedAt` (unix seconds).
    func storePurge(_ purge: PurgeRecord) async throws(StoreUnavailable)
    /// Every purge still kept.
    func purgeRecords(now: Int64) async throws(StoreUnavailable) -> [PurgeRecord]
}

/// Revocation checks and bookkeeping shared by the webhook and the token verifier. The record is the database
/// (`RevocationTable`); the in-process view (`list`) is read from it by the first request, polled from it twice a second
/// (`DatabaseRevocationSync`) and, with Redis, also fed by pub/sub (`RevocationFanOut`), which only makes the news
/// arrive sooner: a flushed, evicted or failed-over Redis changes nothing, since the next poll restores the view.
final class Revocations: Sendable {
    /// A view older than this is not trusted: tokens are answered 503 until the database answers again.
    static let maxViewAge: Duration = .seconds(5)

    let list: RevocationList
    let table: any RevocationTable
    let fanOut: RevocationFanOut?
    /// Where the RBAC purges read in the same poll go (`RBACService.synchronizePurges`), so one read keeps both current.
    private let purgeSink: (@Sendable ([PurgeRecord]) -> Void)?
    private let logger: Logger
    /// The read under way when a request found the view stale (one at a time, shared by every request waiting).
    private let refreshing = Mutex<Task<Bool, Never>?>(nil)
    /// `DispatchTime` uptime of the last successful read of the table (0: never).
    private let syncedAt = Atomic<UInt64>(0)
    private let refused: CoreMetrics.Counter
    private let stored: [String: CoreMetrics.Counter]

    init(
        table: any RevocationTable, fanOut: RevocationFanOut? = nil, purgeSink: (@Sendable ([PurgeRecord]) -> Void)? = nil,
        logger: Logger, metrics: any MetricsFactory
    ) {
        list = RevocationList()
        self.table = table
        self.fanOut = fanOut
        self.purgeSink = purgeSink
        self.logger = logger
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

    /// Whether the view was read from the database within `maxViewAge` (false before the first read).
    var isCurrent: Bool {
        let last = syncedAt.load(ordering: .relaxed)
        guard last != 0 else { return false }
        let age = DispatchTime.now().uptimeNanoseconds &- last
        return age < UInt64(Self.maxViewAge.components.seconds) * 1_000_000_000
    }

    /// Stores durably first (throws when the database did not take it: nothing was revoked), applies it here,
    /// then tells the other instances through Redis when there is one (best effort: their next poll finds it).
    func revoke(_ revocation: Revocation, now: Int64) async throws(StoreUnavailable) {
        try await table.storeRevocation(
            field: revocation.field, tenant: revocation.tenant, record: revocation.encoded, expiresAt: revocation.expiresAt)
        list.apply([revocation], now: now)
        stored[revocation.scopeName]?.increment()
        if let fanOut {
            do {
                try await fanOut.publish(revocation)
            } catch {
                logger.warning(
                    "revocation stored but not published; other instances apply it at their next database poll",
                    metadata: ["reason": .string(error.description)])
            }
        }
    }

    /// Pulls every stored revocation (and purge) into the view (twice a second, and when a request finds it stale).
    func resynchronize(now: Int64) async throws(StoreUnavailable) {
        let records = try await table.revocationRecords(now: now)
        if let purgeSink { purgeSink(try await table.purgeRecords(now: now)) }
        list.prune(now: now)
        list.apply(records.compactMap(Revocation.init(decoding:)), now: now)
        syncedAt.store(max(1, DispatchTime.now().uptimeNanoseconds), ordering: .relaxed)
    }

    /// A stale view read again now, once for every request waiting on it (the first request after start, or after
    /// the database came back, need not wait for the next poll). False when the database did not answer.
    func refresh() async -> Bool {
        let task = refreshing.withLock { current -> Task<Bool, Never> in
            if let current { return current }
            let task = Task { [self] () -> Bool in
                let done = (try? await resynchronize(now: Int64(Date().timeIntervalSince1970))) != nil
                refreshing.withLock { $0 = nil }
                return done
            }
            current = task
            return task
        }
        return await task.value
    }
}

/// The fast path between instances when Redis is there: each revocation published on a channel, sealed with
/// `CACHE_SIGNING_KEY` (a message without our MAC is ignored). Nothing is stored in Redis: the database is the
/// record, so there is nothing in Redis to delete, evict, flush or bloat.
struct RevocationFanOut: Sendable {
    static let channel = "fnhost:sessions-revoked"

    let client: RedisClient
    let sealer: SignedCache

    func publish(_ revocation: Revocation) async throws(CacheUnavailable) {
        let reply: RedisValue
        do {
            reply = try await client.command([Array("PUBLISH".utf8), Array(Self.channel.utf8), Array(Self.message(revocation, sealer: sealer).utf8)])
        } catch {
            throw CacheUnavailable(description: error.description)
        }
        if case .error(let message) = reply { throw CacheUnavailable(description: "redis error: \(message)") }
    }

    static func message(_ revocation: Revocation, sealer: SignedCache) -> String {
        Data(sealer.seal(revocation.encoded, key: channel)).base64EncodedString()
    }

    /// A message heard on the channel; nil unless it carries our MAC.
    static func revocation(fromMessage message: String, sealer: SignedCache) -> Revocation? {
        guard message.utf8.count <= 4096, let data = Data(base64Encoded: message),
            let opened = sealer.open(Array(data), key: channel)
        else { return nil }
        return Revocation(decoding: opened)
    }

    /// The subscription, applying other instances' revocations as they are published; on every (re)subscription
    /// the view is read from the database again (what was published while unsubscribed is there).
    func subscriber(_ revocations: Revocations, logger: Logger) -> some Service {
        // A message that fails its MAC is logged once per process, not once per message.
        let warned = OnceFlag()
        return client.subscribe(
            channel: Self.channel, logger: logger,
            onSubscribed: { [revocations, logger] in
                Task {
                    do {
                        try await revocations.resynchronize(now: Int64(Date().timeIntervalSince1970))
                    } catch {
                        logger.warning("revocations could not be read from the database", metadata: ["reason": .string("\(error)")])
                    }
                }
            },
            handler: { [sealer, revocations, logger] message in
                guard let revocation = Self.revocation(fromMessage: message, sealer: sealer) else {
                    if warned.first() {
                        logger.warning("revocation message failed authentication; ignored (logged once)")
                    }
                    return
                }
                revocations.list.apply([revocation], now: Int64(Date().timeIntervalSince1970))
            })
    }
}

/// Polls the database for revocations and RBAC purges made by other instances (every instance, whatever the
/// cache): the bound on how long a revocation or purge can go unseen when a pub/sub message is lost.
struct DatabaseRevocationSync: Service {
    let revocations: Revocations
    let logger: Logger
    var interval: Duration = .milliseconds(500)

    /// One poll: revocations and purges.
    func poll(now: Int64) async throws(StoreUnavailable) {
        try await revocations.resynchronize(now: now)
    }

    func run() async throws {
        var failing = false
        var polls = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let now = Int64(Date().timeIntervalSince1970)
                try await poll(now: now)
                polls += 1
                if polls % 120 == 1 { try await revocations.table.pruneRevocations(now: now) }
                failing = false
            } catch {
                if !failing { logger.warning("revocations could not be read from the database", metadata: ["reason": .string("\(error)")]) }
                failing = true
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

/// True the first time `first()` is called, false ever after.
final class OnceFlag: Sendable {
    private let taken = Atomic<Bool>(false)

    func first() -> Bool { !taken.exchange(true, ordering: .relaxed) }
}

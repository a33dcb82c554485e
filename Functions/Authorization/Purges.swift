import Synchronization

/// One RBAC purge as the database records it (`rbac_purges`): a user's answers (or, `user` nil, every answer of the
/// tenant) fetched at or before `purgedAt` (unix seconds, the purging instance's clock) are never used again.
struct PurgeRecord: Sendable, Equatable {
    let tenant: TenantID
    let user: UserID?
    let purgedAt: Double
    /// When nothing fetched before the purge can still be used anyway (its age is past `RBAC_STALE_MAX_SECONDS`).
    let expiresAt: Int64
}

/// The purges every instance knows (docs/identity.md), binding cached RBAC answers to the purge record rather than
/// to the cache: an answer is used only if it was asked for after the latest purge that covers it, by more than
/// `clockSkew` (instances' clocks differ a little; an answer asked for within that margin after a purge is simply
/// asked for again). Filled by this instance's purges, pub/sub and the database poll; bounded by expiry.
final class PurgeList: Sendable {
    /// The most two instances' clocks are assumed to differ (docs/operations.md).
    static let clockSkew: Double = 1

    private struct TenantPurges {
        var tenant: Double?
        var users: [UserID: Double] = [:]
    }

    private let tenants = Mutex<[TenantID: TenantPurges]>([:])
    /// Lets the common case (no purge anywhere) skip the lock.
    private let empty = Atomic<Bool>(true)

    init() {}

    /// The latest purge covering (tenant, user), if any.
    func latest(tenant: TenantID, user: UserID) -> Double? {
        if empty.load(ordering: .acquiring) { return nil }
        return tenants.withLock { map in
            guard let entry = map[tenant] else { return nil }
            switch (entry.tenant, entry.users[user]) {
            case (let whole?, let one?): return max(whole, one)
            case (let whole?, nil): return whole
            case (nil, let one?): return one
            case (nil, nil): return nil
            }
        }
    }

    /// Whether an answer asked for at `fetchedAt` may be used: after every purge covering it, by the skew margin.
    func permits(fetchedAt: Double, tenant: TenantID, user: UserID) -> Bool {
        guard let latest = latest(tenant: tenant, user: user) else { return true }
        return fetchedAt > latest + Self.clockSkew
    }

    /// Records a purge; true when it is newer than what was known for its scope (the caller drops local copies).
    @discardableResult
    func apply(tenant: TenantID, user: UserID?, at purgedAt: Double) -> Bool {
        tenants.withLock { map in
            var entry = map[tenant] ?? TenantPurges()
            let changed: Bool
            if let user {
                changed = entry.users[user].map { $0 < purgedAt } ?? true
                if changed { entry.users[user] = purgedAt }
            } else {
                changed = entry.tenant.map { $0 < purgedAt } ?? true
                if changed { entry.tenant = purgedAt }
            }
            map[tenant] = entry
            empty.store(false, ordering: .releasing)
            return changed
        }
    }

    /// Forgets purges older than `before` (nothing fetched before them can be used anyway).
    func prune(before: Double) {
        tenants.withLock { map in
            for tenant in Array(map.keys) {
                guard var entry = map[tenant] else { continue }
                if let whole = entry.tenant, whole < before { entry.tenant = nil }
                entry.users = entry.users.filter { $0.value >= before }
                map[tenant] = entry.tenant == nil && entry.users.isEmpty ? nil : entry
            }
            empty.store(map.isEmpty, ordering: .releasing)
        }
    }

    var count: Int {
        tenants.withLock { map in map.values.reduce(0) { $0 + ($1.tenant == nil ? 0 : 1) + $1.users.count } }
    }
}

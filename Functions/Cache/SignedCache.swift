import CoreMetrics
import Crypto
import FunctionRuntime
import Logging
import Synchronization

/// The shared cache as an untrusted store (docs/settings.md `CACHE_SIGNING_KEY`): every value is sealed
/// with HMAC-SHA256 over a version, the key and the value, and a value that does not open is
/// ignored as if absent, counted every time (`fnhost_cache_entries_rejected_total`) and logged at
/// most once per key per process (`RejectionReports`), so junk planted under many keys, read again
/// at every refresh, cannot flood the log.
/// Anyone who can write to Redis can then delete or replay an entry under its own key (the
/// worst is a refetch), but not plant a JWKS or an RBAC answer.
///
/// Claims (`setIfAbsent`, used for dedupe) go under a keyed name, `namespace:h:HMAC(key)`, so a
/// writer without the key cannot plant the marker that would suppress a future event.
struct SignedCache: KeyValueCache {
    static let version: UInt8 = 1
    static let macLength = 32

    let base: any KeyValueCache
    private let key: SymmetricKey
    private let logger: Logger
    private let rejected: CoreMetrics.Counter
    private let reports: RejectionReports

    /// `reportedKeys`: how many distinct keys are logged one by one before the rest are only counted.
    init(
        base: any KeyValueCache, signingKey: [UInt8], logger: Logger, metrics: any MetricsFactory,
        reportedKeys: Int = RejectionReports.standardCapacity
    ) {
        self.base = base
        self.key = SymmetricKey(data: signingKey)
        self.logger = logger
        self.rejected = CoreMetrics.Counter(label: "fnhost_cache_entries_rejected_total", factory: metrics)
        self.reports = RejectionReports(capacity: reportedKeys)
    }

    /// A key for one process (development without `CACHE_SIGNING_KEY`).
    static func generatedKey() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    var isShared: Bool { base.isShared }

    func get(_ key: String) async throws(CacheUnavailable) -> [UInt8]? {
        guard let sealed = try await base.get(key) else { return nil }
        return verified(sealed, key: key)
    }

    func set(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable) {
        try await base.set(key, seal(value, key: key), ttl: ttl)
    }

    func setIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable) -> Bool {
        let name = claimName(key)
        return try await base.setIfAbsent(name, seal(value, key: name), ttl: ttl)
    }

    /// Deletes the entries and any claim under the same keys.
    func delete(_ keys: [String]) async throws(CacheUnavailable) -> Int {
        try await base.delete(keys + keys.map(claimName))
    }

    func deletePrefix(_ prefix: String) async throws(CacheUnavailable) -> Int {
        try await base.deletePrefix(prefix)
    }

    func publish(_ channel: String, _ message: String) async throws(CacheUnavailable) {
        try await base.publish(channel, message)
    }

    func ping() async -> Bool { await base.ping() }

    /// `version ‖ HMAC(version ‖ len(key) ‖ key ‖ value) ‖ value`.
    func seal(_ value: [UInt8], key name: String) -> [UInt8] {
        var out: [UInt8] = [Self.version]
        out.reserveCapacity(1 + Self.macLength + value.count)
        out.append(contentsOf: mac(value[...], key: name))
        out.append(contentsOf: value)
        return out
    }

    /// `open`, for a value read from the shared store: one that fails is counted and reported as
    /// `get` does (a caller reading sealed values by other means, e.g. a hash or a channel, uses this).
    func verified(_ sealed: [UInt8], key name: String) -> [UInt8]? {
        if let value = open(sealed, key: name) { return value }
        reject(name)
        return nil
    }

    func open(_ sealed: [UInt8], key name: String) -> [UInt8]? {
        guard sealed.count >= 1 + Self.macLength, sealed[0] == Self.version else { return nil }
        let tag = sealed[1..<(1 + Self.macLength)]
        let value = sealed[(1 + Self.macLength)...]
        guard ConstantTime.equals(tag, mac(value, key: name)) else { return nil }
        return Array(value)
    }

    private func mac(_ value: ArraySlice<UInt8>, key name: String) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: key)
        var length = UInt64(name.utf8.count).bigEndian
        hmac.update(data: [Self.version])
        withUnsafeBytes(of: &length) { hmac.update(data: $0) }
        hmac.update(data: Array(name.utf8))
        hmac.update(data: value)
        return Array(hmac.finalize())
    }

    private func claimName(_ key: String) -> String {
        let namespace = key.split(separator: ":", maxSplits: 1).first.map(String.init) ?? "claim"
        var hmac = HMAC<SHA256>(key: self.key)
        hmac.update(data: Array("claim:".utf8))
        hmac.update(data: Array(key.utf8))
        return namespace + ":h:" + Hex.encode(hmac.finalize())
    }

    private func reject(_ key: String) {
        rejected.increment()
        switch reports.first(key) {
        case .key:
            logger.warning("shared cache entry failed authentication; ignored", metadata: ["cache_key": .string(key)])
        case .capacityReached:
            logger.warning(
                "shared cache entries failed authentication under more than \(reports.capacity) keys; further keys are only counted",
                metadata: ["metric": "fnhost_cache_entries_rejected_total"])
        case .alreadyReported:
            break
        }
    }
}

/// The keys whose rejection has been logged, so each is logged at most once per process. Bounded: the
/// first `capacity` distinct keys are logged one by one, then one line says the rest are only counted
/// (forgetting the set instead would log the same keys again). Keys compare as bytes.
final class RejectionReports: Sendable {
    static let standardCapacity = 10_000

    enum Verdict: Equatable {
        /// First time for this key: log it.
        case key
        /// A new key once `capacity` keys are held: log once that keys are no longer logged.
        case capacityReached
        case alreadyReported
    }

    let capacity: Int
    private let state = Mutex<(keys: Set<[UInt8]>, full: Bool)>(([], false))

    init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    func first(_ key: String) -> Verdict {
        state.withLock { state in
            let bytes = Array(key.utf8)
            if state.keys.contains(bytes) { return .alreadyReported }
            if state.keys.count < capacity {
                state.keys.insert(bytes)
                return .key
            }
            if state.full { return .alreadyReported }
            state.full = true
            return .capacityReached
        }
    }
}

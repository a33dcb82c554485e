import CoreMetrics
import Crypto
import FunctionRuntime
import Logging
import Synchronization

/// The shared cache as an untrusted store (docs/settings.md `CACHE_SIGNING_KEY`): every value is sealed
/// with HMAC-SHA256 over a version, the key and the value, and a value that does not open is
/// ignored as if absent, logged once per key and counted (`fnhost_cache_entries_rejected_total`).
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
    private let reported: ReportedKeys

    init(base: any KeyValueCache, signingKey: [UInt8], logger: Logger, metrics: any MetricsFactory) {
        self.base = base
        self.key = SymmetricKey(data: signingKey)
        self.logger = logger
        self.rejected = CoreMetrics.Counter(label: "fnhost_cache_entries_rejected_total", factory: metrics)
        self.reported = ReportedKeys()
    }

    /// A key for one process (development without `CACHE_SIGNING_KEY`).
    static func generatedKey() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    var isShared: Bool { base.isShared }

    func get(_ key: String) async throws(CacheUnavailable) -> [UInt8]? {
        guard let sealed = try await base.get(key) else { return nil }
        if let value = open(sealed, key: key) { return value }
        reject(key)
        return nil
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
        guard reported.firstTime(key) else { return }
        logger.warning(
            "shared cache entry failed authentication; ignored", metadata: ["cache_key": .string(key)])
    }
}

/// Keys already logged as rejected (bounded; forgets everything when full).
private final class ReportedKeys: Sendable {
    private let keys = Mutex<Set<String>>([])

    func firstTime(_ key: String) -> Bool {
        keys.withLock { set in
            if set.count >= 10_000 { set.removeAll(keepingCapacity: true) }
            return set.insert(key).inserted
        }
    }
}

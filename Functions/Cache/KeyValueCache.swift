import Foundation
import Synchronization

struct CacheUnavailable: Error, Sendable, CustomStringConvertible {
    let description: String
}

/// The shared cache behind one protocol: Redis when `REDIS_URL` is set, else in-process.
/// Every failure is `CacheUnavailable`; callers degrade (a cache outage alone never denies).
protocol KeyValueCache: Sendable {
    /// True when other instances see the same data (Redis).
    var isShared: Bool { get }
    func get(_ key: String) async throws(CacheUnavailable) -> [UInt8]?
    func set(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable)
    /// Stores only when the key is absent; true when this call stored it (deduplication).
    func setIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable) -> Bool
    @discardableResult func delete(_ keys: [String]) async throws(CacheUnavailable) -> Int
    /// Deletes every key beginning with `prefix` (SCAN + DEL on Redis, never KEYS).
    @discardableResult func deletePrefix(_ prefix: String) async throws(CacheUnavailable) -> Int
    /// Tells every instance (Redis pub/sub); in-process there is no one else to tell.
    func publish(_ channel: String, _ message: String) async throws(CacheUnavailable)
    func ping() async -> Bool
}

/// The embedded default: a bounded map with expiry, for a single instance.
final class InProcessCache: KeyValueCache {
    private struct Entry {
        var value: [UInt8]
        var expiresAt: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let capacity: Int

    init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    var isShared: Bool { false }

    func get(_ key: String) async throws(CacheUnavailable) -> [UInt8]? {
        let now = ContinuousClock.now
        return entries.withLock { map in
            guard let entry = map[key] else { return nil }
            if entry.expiresAt <= now {
                map[key] = nil
                return nil
            }
            return entry.value
        }
    }

    func set(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable) {
        let now = ContinuousClock.now
        entries.withLock { map in
            makeRoom(&map, now: now)
            map[key] = Entry(value: value, expiresAt: now + ttl)
        }
    }

    func setIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable) -> Bool {
        let now = ContinuousClock.now
        return entries.withLock { map in
            if let existing = map[key], existing.expiresAt > now { return false }
            makeRoom(&map, now: now)
            map[key] = Entry(value: value, expiresAt: now + ttl)
            return true
        }
    }

    func delete(_ keys: [String]) async throws(CacheUnavailable) -> Int {
        entries.withLock { map in keys.reduce(0) { count, key in count + (map.removeValue(forKey: key) == nil ? 0 : 1) } }
    }

    func deletePrefix(_ prefix: String) async throws(CacheUnavailable) -> Int {
        entries.withLock { map in
            let doomed = map.keys.filter { $0.hasPrefix(prefix) }
            for key in doomed { map[key] = nil }
            return doomed.count
        }
    }

    func publish(_ channel: String, _ message: String) async throws(CacheUnavailable) {}

    func ping() async -> Bool { true }

    /// Drops expired entries, then arbitrary ones, when full.
    private func makeRoom(_ map: inout [String: Entry], now: ContinuousClock.Instant) {
        guard map.count >= capacity else { return }
        for (key, entry) in map where entry.expiresAt <= now { map[key] = nil }
        while map.count >= capacity, let key = map.keys.first { map[key] = nil }
    }
}

/// The shared cache on Redis.
struct RedisCache: KeyValueCache {
    let client: RedisClient

    var isShared: Bool { true }

    func get(_ key: String) async throws(CacheUnavailable) -> [UInt8]? {
        switch try await run(["GET", key].map { Array($0.utf8) }) {
        case .string(let bytes): bytes
        default: nil
        }
    }

    func set(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable) {
        _ = try await run([Array("SET".utf8), Array(key.utf8), value, Array("PX".utf8), Array(String(Self.milliseconds(ttl)).utf8)])
    }

    func setIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async throws(CacheUnavailable) -> Bool {
        let reply = try await run([
            Array("SET".utf8), Array(key.utf8), value, Array("NX".utf8), Array("PX".utf8),
            Array(String(Self.milliseconds(ttl)).utf8),
        ])
        if case .status("OK") = reply { return true }
        return false
    }

    func delete(_ keys: [String]) async throws(CacheUnavailable) -> Int {
        guard !keys.isEmpty else { return 0 }
        return Int(try await run([Array("DEL".utf8)] + keys.map { Array($0.utf8) }).integer ?? 0)
    }

    func deletePrefix(_ prefix: String) async throws(CacheUnavailable) -> Int {
        let pattern = Self.escapeGlob(prefix) + "*"
        var cursor = "0"
        var deleted = 0
        repeat {
            let reply = try await run(["SCAN", cursor, "MATCH", pattern, "COUNT", "500"].map { Array($0.utf8) })
            guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].bytes, case .array(let keys) = parts[1] else {
                throw CacheUnavailable(description: "unexpected SCAN reply")
            }
            cursor = String(decoding: next, as: UTF8.self)
            let names = keys.compactMap(\.bytes)
            if !names.isEmpty {
                deleted += Int(try await run([Array("DEL".utf8)] + names).integer ?? 0)
            }
        } while cursor != "0"
        return deleted
    }

    func publish(_ channel: String, _ message: String) async throws(CacheUnavailable) {
        _ = try await run(["PUBLISH", channel, message].map { Array($0.utf8) })
    }

    func ping() async -> Bool {
        (try? await run([Array("PING".utf8)])) == .status("PONG")
    }

    private func run(_ arguments: [[UInt8]]) async throws(CacheUnavailable) -> RedisValue {
        do {
            return try await client.command(arguments)
        } catch {
            throw CacheUnavailable(description: error.description)
        }
    }

    /// Whole milliseconds, at least 1 and at most 30 days (no TTL from anywhere can overflow).
    static func milliseconds(_ duration: Duration) -> Int64 {
        let seconds = min(max(duration.components.seconds, 0), 30 * 86_400)
        return max(1, seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    static func escapeGlob(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "*?[]\\".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}

import AsyncHTTPClient
import Crypto
import Foundation
import FunctionRuntime
import JWTKit
import Logging
import NIOCore
import Synchronization

/// The host's signing keys, parsed once into a `JWTKeyCollection` and swapped atomically.
///
/// - Cached for the JWKS response's `Cache-Control: max-age` (bounded to 1 min … 24 h), else 10 min.
/// - An unknown `kid` refetches at most once per 30 s, one fetch in flight; a fresh set is
///   otherwise authoritative, so junk kids cannot make us hammer the host.
/// - The raw JWKS also lives in the shared cache, so a cold instance starts without the host.
/// - When a refresh fails the last good set keeps serving (the keys do not change meaning).
actor JWKSCache {
    struct KeySet: Sendable {
        let keys: JWTKeyCollection
        let kids: Set<String>
        let expiresAt: ContinuousClock.Instant
        let generation: Int
    }

    enum Lookup: Sendable {
        case found(KeySet)
        case unknownKid
        case unavailable
    }

    private let source: JWKSSource
    private let sharedCache: any KeyValueCache
    private let logger: Logger
    private let unknownKidCooldown: Duration
    private var current: KeySet?
    private var lastUnknownKidFetch: ContinuousClock.Instant?
    private var lastFailure: ContinuousClock.Instant?
    private var inFlight: Task<KeySet?, Never>?
    private var generation = 0
    private let currentGeneration = Atomic<Int>(0)
    private(set) var hostFetches = 0

    /// The generation of the key set in use (0 before the first); read without an actor hop.
    nonisolated var generationNow: Int { currentGeneration.load(ordering: .relaxed) }

    init(source: JWKSSource, sharedCache: any KeyValueCache, logger: Logger, unknownKidCooldown: Duration = .seconds(30)) {
        self.source = source
        self.sharedCache = sharedCache
        self.logger = logger
        self.unknownKidCooldown = unknownKidCooldown
    }

    var sharedKey: String { "jwks:" + source.cacheKey }

    /// The key set able to verify `kid`, refreshing as the rules above allow.
    func keys(for kid: String) async -> Lookup {
        let now = ContinuousClock.now
        if let set = current, now < set.expiresAt {
            if set.kids.contains(kid) { return .found(set) }
            if let last = lastUnknownKidFetch, now - last < unknownKidCooldown { return .unknownKid }
        }
        if current != nil, current.map({ now < $0.expiresAt }) == true {
            lastUnknownKidFetch = now
        }
        let refreshed = await refresh(preferShared: current == nil)
        if let set = refreshed ?? current {
            return set.kids.contains(kid) ? .found(set) : .unknownKid
        }
        return .unavailable
    }

    private func refresh(preferShared: Bool) async -> KeySet? {
        if let inFlight { return await inFlight.value }
        // While the host is failing, serve the last good set without asking again for 5 s.
        if let lastFailure, current != nil, ContinuousClock.now - lastFailure < .seconds(5) { return nil }
        let task = Task { await self.load(preferShared: preferShared) }
        inFlight = task
        let result = await task.value
        inFlight = nil
        if let result {
            current = result
            currentGeneration.store(result.generation, ordering: .relaxed)
            lastFailure = nil
        } else {
            lastFailure = .now
        }
        return result
    }

    private func load(preferShared: Bool) async -> KeySet? {
        if preferShared, let cached = try? await sharedCache.get(sharedKey), let set = await build(cached, maxAge: .seconds(60)) {
            return set
        }
        hostFetches += 1
        do {
            let (body, maxAge) = try await source.fetch()
            guard let set = await build(body, maxAge: maxAge) else {
                logger.warning("host JWKS has no usable RS256 key")
                return nil
            }
            try? await sharedCache.set(sharedKey, body, ttl: maxAge)
            return set
        } catch {
            logger.warning("host JWKS fetch failed", metadata: ["reason": .string(String(describing: error))])
            return nil
        }
    }

    /// Only RSA keys usable for RS256 with a modulus of at least 2048 bits; others are skipped.
    private func build(_ body: [UInt8], maxAge: Duration) async -> KeySet? {
        guard let jwks = try? JSONDecoder().decode(JWKS.self, from: Data(body)) else { return nil }
        let keys = JWTKeyCollection()
        var kids: Set<String> = []
        for var jwk in jwks.keys {
            guard jwk.keyType == .rsa, let kid = jwk.keyIdentifier?.string, !kid.isEmpty,
                jwk.algorithm == nil || jwk.algorithm == .rs256,
                let modulus = jwk.modulus.flatMap({ Base64URL.decode(Substring($0)) }),
                Self.bitLength(modulus) >= 2048
            else { continue }
            jwk.algorithm = .rs256
            do {
                try await keys.add(jwk: jwk)
                kids.insert(kid)
            } catch {
                continue
            }
        }
        guard !kids.isEmpty else { return nil }
        _ = await keys.clearDefault()
        generation += 1
        let bounded = min(max(maxAge, .seconds(60)), .seconds(86_400))
        return KeySet(keys: keys, kids: kids, expiresAt: .now + bounded, generation: generation)
    }

    static func bitLength(_ bytes: [UInt8]) -> Int {
        guard let first = bytes.firstIndex(where: { $0 != 0 }) else { return 0 }
        return (bytes.count - first) * 8 - bytes[first].leadingZeroBitCount
    }
}

/// Where the JWKS comes from: the host over HTTP (`HOST_JWKS_URI`) or the development host in-process.
struct JWKSSource: Sendable {
    let cacheKey: String
    let fetch: @Sendable () async throws -> ([UInt8], Duration)

    static func http(uri: String, http: OutboundHTTP = OutboundHTTP()) -> JWKSSource {
        JWKSSource(cacheKey: uri) {
            var request = HTTPClientRequest(url: uri)
            request.headers.add(name: "Accept", value: "application/json")
            let reply = try await http.send(request, timeout: .seconds(2), maxBody: 256 * 1024)
            guard reply.status == 200 else { throw CacheUnavailable(description: "JWKS answered \(reply.status)") }
            return (Array(reply.body.readableBytesView), maxAge(reply.headers.first(name: "Cache-Control")))
        }
    }

    /// `max-age=N` from Cache-Control, clamped to 1 min … 24 h (any number of digits: never an
    /// overflow), else 10 minutes.
    static func maxAge(_ header: String?) -> Duration {
        guard let header else { return .seconds(600) }
        for directive in header.split(separator: ",") {
            let parts = directive.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].utf8.count == 7, parts[0].lowercased() == "max-age" else { continue }
            let digits = parts[1].utf8
            guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { continue }
            let seconds = digits.count > 6 ? 86_400 : min(Int(Substring(parts[1])) ?? 86_400, 86_400)
            return .seconds(max(seconds, 60))
        }
        return .seconds(600)
    }
}

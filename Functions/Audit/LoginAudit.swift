import FunctionRuntime
import Synchronization

/// Appends `LOGIN_VALIDATED` once per distinct token: a per-instance set of token hashes in
/// front of a shared-cache claim (`SET NX audit:login:{sha256}` until the token expires), so
/// several instances seeing the same token write one event. With the shared cache down each
/// instance still writes at most one (better a duplicate than a lost login).
final class LoginAudit: Sendable {
    private let seen = Mutex<[String: Double]>([:])
    private let cache: any KeyValueCache
    private let sink: any AuditSink
    private let capacity: Int

    init(cache: any KeyValueCache, sink: any AuditSink, capacity: Int = 50_000) {
        self.cache = cache
        self.sink = sink
        self.capacity = capacity
    }

    func observe(_ identity: Identity, now: Double) async {
        let first = seen.withLock { map -> Bool in
            if map[identity.tokenHash] != nil { return false }
            if map.count >= capacity { map = map.filter { $0.value > now } }
            if map.count >= capacity { map.removeAll(keepingCapacity: true) }
            map[identity.tokenHash] = identity.expiresAt
            return true
        }
        guard first else { return }
        let ttl = max(1, identity.expiresAt - now + 60)
        let claimed = (try? await cache.setIfAbsent("audit:login:" + identity.tokenHash, [1], ttl: .seconds(ttl))) ?? true
        guard claimed else { return }
        await sink.record(
            AuditRecord(
                tenantID: identity.tenantID, actorSub: identity.subject, actorEmail: identity.email, eventType: "LOGIN_VALIDATED",
                severity: .info,
                details: [
                    "token_sha256": .string(identity.tokenHash), "amr": .array(identity.amr.map(JSONValue.string)),
                    "expires_at": .number(identity.expiresAt.rounded(.down)),
                ]))
    }
}

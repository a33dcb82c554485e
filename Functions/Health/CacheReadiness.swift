/// `/health/ready` asks the shared cache (Redis) to answer a PING.
struct CacheReadiness: ReadinessCheck {
    let cache: any KeyValueCache
    var name: String { "cache" }

    func isReady() async -> Bool {
        await cache.ping()
    }
}

/// `/health/ready` asks the database to answer `SELECT 1`.
struct DatabaseReadiness: ReadinessCheck {
    let store: any LeadStore
    var name: String { "database" }

    func isReady() async -> Bool {
        await store.ping()
    }
}

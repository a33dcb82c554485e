/// `/health/ready` asks the shared cache (Redis) to answer a PING.
struct CacheReadiness: ReadinessCheck {
    let cache: any KeyValueCache
    var name: String { "cache" }

    func isReady() async -> Bool {
        await cache.ping()
    }
}

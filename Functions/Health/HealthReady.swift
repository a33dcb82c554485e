import FunctionRuntime

/// A dependency `GET /health/ready` asks before saying the instance can take traffic.
protocol ReadinessCheck: Sendable {
    var name: String { get }
    /// True when the dependency answered in time.
    func isReady() async -> Bool
}

/// `GET /health/ready`: 200 when every dependency answers, else 503 `SERVICE_UNAVAILABLE`
/// naming the ones that did not. The checks run concurrently.
struct HealthReady: HTTPFunction {
    let checks: [any ReadinessCheck]

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        let results = await withTaskGroup(of: (String, Bool).self) { group in
            for check in checks {
                group.addTask { (check.name, await check.isReady()) }
            }
            var results: [String: Bool] = [:]
            for await (name, ready) in group { results[name] = ready }
            return results
        }
        let failing = results.filter { !$0.value }.keys.sorted()
        guard failing.isEmpty else {
            throw FunctionError.serviceUnavailable("not ready: \(failing.joined(separator: ", "))")
        }
        return .json { writer in
            writer.beginObject()
            writer.field("status", "ok")
            writer.key("checks")
            writer.beginObject()
            for name in results.keys.sorted() { writer.field(name, "ok") }
            writer.endObject()
            writer.endObject()
        }
    }
}

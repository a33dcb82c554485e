import FunctionRuntime

/// `GET /health`: the process is up and serving. Touches no dependency, so it stays cheap
/// for load balancers polling it.
struct Health: HTTPFunction {
    private static let body = Array(#"{"status":"ok"}"#.utf8)

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        .json(Self.body)
    }
}

import Foundation
import TestSupport
import Testing

/// Two `fnhost` processes on one Redis enforce one budget per tenant+user.
@Suite(.serialized) struct RateLimitFlowTests {
    @Test func twoProcessesShareTheBudgetThroughRedis() async throws {
        let redis = try #require(ProcessInfo.processInfo.environment["FNHOST_TEST_REDIS_URL"], "run through make test")
        let root = try ScriptRoot.repository()
        let environment = ["REDIS_URL": redis, "RATE_LIMIT_PER_SECOND": "0.05", "RATE_LIMIT_BURST": "4"]
        let first = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root], environment: environment)
        defer { first.terminate() }
        let second = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root], environment: environment)
        defer { second.terminate() }
        let bases = ["http://127.0.0.1:\(try await first.waitForPort())", "http://127.0.0.1:\(try await second.waitForPort())"]
        let token = try await LeadsFlowTests.token(root, tenant: "t-rl-\(UUID().uuidString.prefix(6))", user: "u-1", ["--perm", "LEADS_READ"])
        var statuses: [Int] = []
        var limitedHeaders: [String: String] = [:]
        for index in 0..<6 {
            let (status, _, headers) = try await HTTP.get(bases[index % 2] + "/api/leads", headers: ["Authorization": "Bearer \(token)"])
            statuses.append(status)
            if status == 429 { limitedHeaders = headers }
        }
        #expect(statuses == [200, 200, 200, 200, 429, 429], "4 in total across both processes, not 4 each")
        let retryAfter = limitedHeaders.first { $0.key.lowercased() == "retry-after" }?.value
        #expect(Int(retryAfter ?? "") ?? 0 >= 1)
        #expect(limitedHeaders.contains { $0.key.lowercased() == "ratelimit-policy" && $0.value == #""default";q=4;w=80"# })
    }
}

import Foundation
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import Testing

@testable import Functions

/// A redis-server of the test's own on a free port, so it can be stopped and started again;
/// optionally TLS-only (the certificate `scripts/with-services.sh` generated) with an ACL user
/// and the default user disabled, as managed Redis is set up.
final class OwnRedis: @unchecked Sendable {
    struct ACLUser {
        var name: String
        var password: String
    }

    let port: Int
    let tls: Bool
    let user: ACLUser?
    let bind: String
    private var process: Process?
    private let folder: URL

    init(tls: Bool = false, user: ACLUser? = nil, bind: String = "127.0.0.1") throws {
        port = try FreePort.pick()
        self.tls = tls
        self.user = user
        self.bind = bind
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    static func tlsFile(_ name: String) throws -> String {
        guard let path = ProcessInfo.processInfo.environment[name], !path.isEmpty else {
            throw RedisTestError("\(name) is not set: run the tests through `make test`")
        }
        return path
    }

    /// The URL a client uses (`rediss://` with the ACL user when configured).
    func url(host: String = "127.0.0.1", user: ACLUser? = nil) -> String {
        let credentials = (user ?? self.user).map { "\($0.name):\($0.password)@" } ?? ""
        return "\(tls ? "rediss" : "redis")://\(credentials)\(host):\(port)"
    }

    func start() async throws {
        var config = ["bind \(bind)", "save \"\"", "appendonly no", "dir \(folder.path)"]
        if tls {
            config += [
                "port 0", "tls-port \(port)", "tls-cert-file \(try Self.tlsFile("FNHOST_TEST_TLS_CERT"))",
                "tls-key-file \(try Self.tlsFile("FNHOST_TEST_TLS_KEY"))", "tls-ca-cert-file \(try Self.tlsFile("FNHOST_TEST_PG_CA"))",
                "tls-auth-clients no",
            ]
        } else {
            config.append("port \(port)")
        }
        if let user {
            config += ["user default off", "user \(user.name) on >\(user.password) ~* &* +@all"]
        }
        let file = folder.appendingPathComponent("redis.conf")
        try Data((config.joined(separator: "\n") + "\n").utf8).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-server", file.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let client = RedisClient(
            endpoint: try RedisEndpoint(url: url(), caFile: tls ? try Self.tlsFile("FNHOST_TEST_PG_CA") : nil), breakerInterval: .zero)
        for _ in 0..<100 {
            if (try? await client.command(["PING"])) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RedisTestError("redis-server did not start on \(port)")
    }

    /// SIGKILL and poll (Foundation's `waitUntilExit` spins off the main thread on Linux).
    func stop() async {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        for _ in 0..<100 where process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        self.process = nil
    }

    deinit {
        if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: folder)
    }
}

enum FreePort {
    static func pick() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else { throw RedisTestError("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

@Suite(.serialized) struct RateLimitRedisTests {
    static let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }

    @Test func twoLimitersShareOneBudgetInRedis() async throws {
        let policy = RateLimitPolicy(perSecond: 0.01, burst: 5)  // no refill worth mentioning on a slow machine
        let first = RedisRateLimiter(client: try TestRedis.client(), policy: policy, instanceCountHint: 2, logger: Self.logger)
        let second = RedisRateLimiter(client: try TestRedis.client(), policy: policy, instanceCountHint: 2, logger: Self.logger)
        let key = "rl:test:\(UUID().uuidString)"
        var allowed = 0
        for index in 0..<8 where await (index.isMultiple(of: 2) ? first : second).check(key).allowed { allowed += 1 }
        #expect(allowed == 5, "the burst is shared, not 5 per instance")
        let denied = await first.check(key)
        #expect(!denied.allowed)
        #expect(denied.retryAfter > 0 && denied.retryAfter <= 100_000_000)
        #expect(!first.isDegraded)
        let ttl = try await TestRedis.client().command(["PTTL", key]).integer ?? -1
        #expect(ttl > 0 && ttl <= 500_000, "the key expires once the bucket is full again: \(ttl)")
    }

    @Test func redisDownLimitsPerInstanceWithTheDividedBudgetAndSwitchesBack() async throws {
        let redis = try OwnRedis()
        let limiter = RedisRateLimiter(
            client: RedisClient(endpoint: try RedisEndpoint(url: "redis://127.0.0.1:\(redis.port)")),
            policy: RateLimitPolicy(perSecond: 0.01, burst: 6), instanceCountHint: 2, logger: Self.logger)
        let key = "rl:test:\(UUID().uuidString)"
        var allowed = 0
        for _ in 0..<6 where await limiter.check(key).allowed { allowed += 1 }
        #expect(allowed == 3, "Redis down: this instance allows 6 / 2")
        #expect(limiter.isDegraded)
        try await redis.start()
        try await Task.sleep(for: .milliseconds(1200))  // the client's 1 s breaker
        let other = "rl:test:\(UUID().uuidString)"
        var shared = 0
        for _ in 0..<8 where await limiter.check(other).allowed { shared += 1 }
        await redis.stop()
        #expect(shared == 6, "Redis back: the full shared budget again")
        #expect(!limiter.isDegraded)
    }

    @Test func overBudgetAnswers429WithHeaders() async throws {
        try await LeadsHarness.run(
            databaseURL: try Backend.sqlite.databaseURL(), extra: ["RATE_LIMIT_PER_SECOND": "0.02", "RATE_LIMIT_BURST": "3"]
        ) { host, key, client in
            await LeadsHarness.grant(host, tenant: "t-rl", user: "u-1", ["LEADS_READ"])
            await LeadsHarness.grant(host, tenant: "t-rl", user: "u-2", ["LEADS_READ"])
            let token = try LeadsHarness.token(key, tenant: "t-rl", user: "u-1")
            for remaining in [2, 1, 0] {
                let reply = try await client.send(.get, "/api/leads", token: token)
                #expect(reply.status == .ok)
                #expect(reply.headers[RateLimitHeaders.rateLimit]?.hasPrefix(#""default";r=\#(remaining);t="#) == true)
                #expect(reply.headers[RateLimitHeaders.rateLimitPolicy] == #""default";q=3;w=150"#)
            }
            let limited = try await client.send(.get, "/api/leads", token: token)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.code == "RATE_LIMITED")
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(limited.headers[RateLimitHeaders.rateLimit]?.hasPrefix(#""default";r=0;"#) == true)
            let otherUser = try LeadsHarness.token(key, tenant: "t-rl", user: "u-2")
            #expect(try await client.send(.get, "/api/leads", token: otherUser).status == .ok, "the budget is per user")
        }
    }
}

import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

@testable import Functions

/// The RESP2 parser on its own: complete, incomplete and hostile input.
struct RESPTests {
    static func parse(_ text: String) throws -> (RedisValue, Int)? {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { raw throws(RESP.ProtocolError) in try RESP.parse(raw).map { ($0.value, $0.consumed) } }
    }

    @Test func repliesAndTheirLengths() throws {
        let cases: [(String, RedisValue)] = [
            ("+OK\r\n", .status("OK")), ("-ERR wrong\r\n", .error("ERR wrong")), (":42\r\n", .integer(42)), (":-7\r\n", .integer(-7)),
            ("$5\r\nhe\r\no\r\n", .string(Array("he\r\no".utf8))), ("$0\r\n\r\n", .string([])), ("$-1\r\n", .null), ("*-1\r\n", .null),
            ("*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n", .array([.integer(1), .string([0x61]), .array([.status("x")])])),
            (":9223372036854775807\r\n", .integer(.max)),
        ]
        for (text, value) in cases {
            let parsed = try #require(try Self.parse(text + "+next\r\n"), "\(text)")
            #expect(parsed.0 == value, "\(text)")
            #expect(parsed.1 == text.utf8.count, "consumed exactly one reply")
            // Every strict prefix is incomplete, never an error or a wrong value.
            for cut in 0..<text.utf8.count {
                #expect(try Self.parse(String(decoding: Array(text.utf8).prefix(cut), as: UTF8.self)) == nil, "\(text) cut at \(cut)")
            }
        }
    }

    @Test func hostileRepliesAreProtocolErrors() {
        var limits = RESP.Limits()
        limits.maxReply = 1024
        let deep = String(repeating: "*1\r\n", count: 9) + ":1\r\n"
        for bad in [
            "?\r\n", ":12a\r\n", ":\r\n", ":99999999999999999999\r\n", ":9223372036854775808\r\n", "$-2\r\n", "$2\r\nabcd\r\n",
            "*-5\r\n", "+a\nb\r\n", "+a\rb\r\n", "$99999999999\r\n", "*2000000\r\n", deep, "$2000\r\n",
        ] {
            let bytes = Array(bad.utf8)
            #expect(throws: RESP.ProtocolError.self, "\(bad.debugDescription)") {
                _ = try bytes.withUnsafeBytes { raw throws(RESP.ProtocolError) in try RESP.parse(raw, limits: limits) }
            }
        }
        let long = Array(repeating: UInt8(ascii: "a"), count: 70_000)
        #expect(throws: RESP.ProtocolError.self) {
            _ = try ([UInt8(ascii: "+")] + long).withUnsafeBytes { raw throws(RESP.ProtocolError) in try RESP.parse(raw) }
        }
        // A huge declared array with few bytes behind it reserves nothing big and just waits.
        #expect(try! Self.parse("*1000000\r\n:1\r\n") == nil)
    }

    @Test func commandsAreArraysOfBulkStrings() {
        var out: [UInt8] = []
        RESP.encode([Array("SET".utf8), [0x00, 0x0D, 0x0A], []], into: &out)
        #expect(out == Array("*3\r\n$3\r\nSET\r\n$3\r\n".utf8) + [0x00, 0x0D, 0x0A] + Array("\r\n$0\r\n\r\n".utf8))
    }
}

/// The SwiftNIO client against real redis-server instances: plaintext, TLS-only with an ACL user,
/// the wrong CA or host, a server killed under load, a server that never answers (docs/settings.md, §6).
@Suite(.serialized) struct RedisClientTests {
    static let user = OwnRedis.ACLUser(name: "fnhost-app", password: "s3cret-\(UUID().uuidString.prefix(8))")

    static func ca() throws -> String { try TestServices.caFile() }
    static func otherCA() throws -> String { try TestServices.otherCAFile() }

    @Test func concurrentCallersPipelineOnSharedConnectionsAndGetTheirOwnReplies() async throws {
        let client = try TestRedis.client()
        let prefix = "pipe:\(UUID().uuidString):"
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<300 {
                group.addTask {
                    let value = Array("v\(index)-\(String(repeating: "x", count: index % 37))".utf8)
                    let replies = try await client.pipeline([
                        [Array("SET".utf8), Array("\(prefix)\(index)".utf8), value], [Array("GET".utf8), Array("\(prefix)\(index)".utf8)],
                    ])
                    #expect(replies == [.status("OK"), .string(value)])
                }
            }
            try await group.waitForAll()
        }
        #expect(try await client.command(["GET", "\(prefix)7"]).bytes.map { String(decoding: $0, as: UTF8.self) } == "v7-xxxxxxx")
        await #expect(throws: RedisError.self) { _ = try await client.command(["INCR", "\(prefix)7"]) }
    }

    /// `redis://:PASSWORD@host/N`: AUTH with the password alone (`requirepass`), then SELECT N on
    /// every connection — keys land in database N and nowhere else; a wrong password is refused
    /// without being echoed.
    @Test func passwordAuthAndSelectAgainstALiveServer() async throws {
        let password = "pw-\(UUID().uuidString.prefix(8))"
        let redis = try OwnRedis(password: password)
        try await redis.start()
        defer { Task { await redis.stop() } }
        let client = RedisClient(endpoint: try RedisEndpoint(url: redis.url(database: 3)), commandTimeout: .seconds(5))
        let key = "select:\(UUID().uuidString)"
        // Concurrent callers: every pooled connection (one per event loop) is authenticated and selected.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<40 { group.addTask { _ = try await client.command(["SET", "\(key):\(index)", "v"]) } }
            try await group.waitForAll()
        }
        func count(_ database: Int) async throws -> String {
            try await runProgram("/usr/bin/env", ["redis-cli", "-p", String(redis.port), "-a", password, "--no-auth-warning", "-n", String(database), "DBSIZE"])
                .output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try await count(3) == "40")
        #expect(try await count(0) == "0", "nothing written to the default database")
        let wrong = RedisClient(endpoint: try RedisEndpoint(url: "redis://:not-the-password@127.0.0.1:\(redis.port)/3"))
        do {
            _ = try await wrong.command(["PING"])
            Issue.record("a wrong password must be refused")
        } catch {
            #expect(!String(describing: error).contains("not-the-password"))
        }
        let unauthenticated = RedisClient(endpoint: try RedisEndpoint(url: "redis://127.0.0.1:\(redis.port)"))
        await #expect(throws: RedisError.self) { _ = try await unauthenticated.command(["GET", "\(key):1"]) }
    }

    /// A restart while the pool sits idle: the first call afterwards is served on a new connection,
    /// not failed on the dead one.
    @Test func anIdlePoolAfterARestartServesTheFirstCall() async throws {
        let redis = try OwnRedis()
        try await redis.start()
        defer { Task { await redis.stop() } }
        let client = RedisClient(endpoint: try RedisEndpoint(url: redis.url()), commandTimeout: .seconds(5), breakerInterval: .zero)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 { group.addTask { _ = try await client.command(["PING"]) } }
            try await group.waitForAll()
        }
        await redis.stop()
        try await redis.start()
        for index in 0..<8 {
            #expect(try await client.command(["SET", "after-restart", "\(index)"]) == .status("OK"), "call \(index) after the restart")
        }
    }

    @Test func tlsOnlyWithAnACLUserAndTheDefaultUserDisabled() async throws {
        let redis = try OwnRedis(tls: true, user: Self.user)
        try await redis.start()
        defer { Task { await redis.stop() } }
        for host in ["127.0.0.1", "localhost"] {
            let client = RedisClient(endpoint: try RedisEndpoint(url: redis.url(host: host), caFile: try Self.ca()), commandTimeout: .seconds(5))
            #expect(try await client.command(["SET", "k", "v"]) == .status("OK"), "\(host)")
            #expect(try await client.command(["GET", "k"]) == .string(Array("v".utf8)))
            #expect(try await client.command(["ACL", "WHOAMI"]) == .string(Array(Self.user.name.utf8)))
        }
        // The default user is off: no credentials, or the wrong ones, are refused — and never echoed.
        let anonymous = RedisClient(endpoint: try RedisEndpoint(url: "rediss://127.0.0.1:\(redis.port)", caFile: try Self.ca()))
        await #expect(throws: RedisError.self) { _ = try await anonymous.command(["GET", "k"]) }
        let wrong = OwnRedis.ACLUser(name: Self.user.name, password: "not-the-password-1234")
        let refused = RedisClient(endpoint: try RedisEndpoint(url: redis.url(user: wrong), caFile: try Self.ca()))
        do {
            _ = try await refused.command(["PING"])
            Issue.record("a wrong password was accepted")
        } catch {
            #expect(error.description.contains("authentication failed"), "\(error)")
            #expect(!error.description.contains(wrong.password) && !error.description.contains(Self.user.password))
        }
        // Plaintext to a TLS-only port is no answer, not a hang.
        let plain = RedisClient(endpoint: try RedisEndpoint(url: "redis://\(Self.user.name):\(Self.user.password)@127.0.0.1:\(redis.port)"))
        await #expect(throws: RedisError.self) { _ = try await plain.command(["PING"]) }
    }

    @Test func theWrongCAOrTheWrongHostIsRefused() async throws {
        let redis = try OwnRedis(tls: true, user: Self.user, bind: "127.0.0.1 127.0.0.2")
        try await redis.start()
        defer { Task { await redis.stop() } }
        let wrongCA = RedisClient(endpoint: try RedisEndpoint(url: redis.url(), caFile: try Self.otherCA()), commandTimeout: .seconds(5))
        // Refused (the reason reads "TLS: …" or "connection closed", depending on which of NIOSSL's
        // events arrives first on a loaded machine).
        await #expect(throws: RedisError.self) { _ = try await wrongCA.command(["PING"]) }
        let rightCA = RedisClient(endpoint: try RedisEndpoint(url: redis.url(), caFile: try Self.ca()), commandTimeout: .seconds(5))
        #expect(try await rightCA.command(["PING"]) == .status("PONG"), "the same server with the right CA")
        // The certificate names 127.0.0.1 and localhost, not 127.0.0.2.
        let wrongHost = RedisClient(endpoint: try RedisEndpoint(url: redis.url(host: "127.0.0.2"), caFile: try Self.ca()), commandTimeout: .seconds(5))
        // No CA file: the system trust store does not know the test CA.
        let system = RedisClient(endpoint: try RedisEndpoint(url: redis.url()), commandTimeout: .seconds(5))
        for (name, client) in [("wrong host", wrongHost), ("system trust", system)] {
            do {
                _ = try await client.command(["PING"])
                Issue.record("\(name): accepted")
            } catch {
                guard case .unavailable = error else { Issue.record("\(name): \(error)"); continue }
            }
        }
        let missing = RedisClient(endpoint: try RedisEndpoint(url: redis.url(), caFile: "/nonexistent/ca.pem"))
        await #expect(throws: RedisError.self) { _ = try await missing.command(["PING"]) }
    }

    /// The module with a TLS Redis it cannot verify keeps serving from the host, and says the cache is not ready.
    @Test func theModuleServesFromTheHostWhenTheCacheCertificateIsWrong() async throws {
        let redis = try OwnRedis(tls: true, user: Self.user)
        try await redis.start()
        defer { Task { await redis.stop() } }
        for (caFile, ready) in [(try Self.otherCA(), false), (try Self.ca(), true)] {
            try await LeadsHarness.run(.sqlite, extra: ["REDIS_URL": redis.url(), "TLS_CA_FILE": caFile]) { host, key, client in
                await LeadsHarness.grant(host, tenant: "t-tls", user: "u-1", ["LEADS_READ"])
                let token = try LeadsHarness.token(key, tenant: "t-tls", user: "u-1")
                #expect(try await client.send(.get, "/api/leads", token: token).status == .ok, "served either way")
                let health = try await client.execute(uri: "/health/ready", method: .get) { Reply(status: $0.status, headers: $0.headers, body: String(buffer: $0.body)) }
                #expect(health.status == (ready ? .ok : .serviceUnavailable), "\(health.body)")
                #expect(!health.body.contains(Self.user.password))
            }
        }
    }

    @Test func aServerKilledUnderLoadFailsFastAndIsUsedAgainWhenBack() async throws {
        let redis = try OwnRedis(tls: true, user: Self.user)
        try await redis.start()
        let client = RedisClient(
            endpoint: try RedisEndpoint(url: redis.url(), caFile: try Self.ca()), commandTimeout: .milliseconds(500), breakerInterval: .milliseconds(100))
        let messages = Mutex<[String]>([])
        let subscriptions = Atomic<Int>(0)
        let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
        let subscriber = client.subscribe(
            channel: "news", logger: logger, onSubscribed: { subscriptions.add(1, ordering: .relaxed) },
            handler: { message in messages.withLock { $0.append(message) } })
        let group = ServiceGroup(services: [subscriber], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Self.until { subscriptions.load(ordering: .relaxed) == 1 }
            let failures = Atomic<Int>(0), successes = Atomic<Int>(0), slowest = Mutex<Duration>(.zero)
            let load = Task {
                while !Task.isCancelled {
                    let started = ContinuousClock.now
                    do {
                        _ = try await client.command(["INCR", "load"])
                        successes.add(1, ordering: .relaxed)
                    } catch {
                        failures.add(1, ordering: .relaxed)
                    }
                    let took = ContinuousClock.now - started
                    slowest.withLock { $0 = max($0, took) }
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            try await Self.until { successes.load(ordering: .relaxed) > 20 }
            await redis.stop()
            try await Self.until { failures.load(ordering: .relaxed) > 5 }
            try await redis.start()
            let before = successes.load(ordering: .relaxed)
            try await Self.until(within: .seconds(5)) { successes.load(ordering: .relaxed) > before + 20 }
            load.cancel()
            #expect(slowest.withLock { $0 } < .seconds(2), "no call outlived its deadline by much")
            // The subscriber came back by itself and hears messages again.
            try await Self.until(within: .seconds(10)) { subscriptions.load(ordering: .relaxed) == 2 }
            _ = try await client.command(["PUBLISH", "news", "after-restart"])
            try await Self.until { messages.withLock { $0.contains("after-restart") } }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await redis.stop()
    }

    /// A server that accepts and never answers: every call ends at its deadline, the breaker then answers at once.
    @Test func aServerThatNeverAnswersCostsOneDeadline() async throws {
        let silent = try SilentListener()
        defer { silent.close() }
        let client = RedisClient(
            endpoint: try RedisEndpoint(url: "redis://127.0.0.1:\(silent.port)"), commandTimeout: .milliseconds(300), breakerInterval: .seconds(5))
        let started = ContinuousClock.now
        do {
            _ = try await client.command(["PING"])
            Issue.record("a silent server answered")
        } catch {
            #expect(error.description.contains("timed out"), "\(error)")
        }
        let took = ContinuousClock.now - started
        #expect(took >= .milliseconds(250) && took < .seconds(3), "\(took)")
        let again = ContinuousClock.now
        await #expect(throws: RedisError.self) { _ = try await client.command(["PING"]) }
        // Without the breaker this call would wait out the 300 ms timeout like the first; compared with
        // the first (which carries the same machine load), not with a fixed bound a loaded CI decides.
        let secondTook = ContinuousClock.now - again
        #expect(secondTook < took - .milliseconds(200), "the breaker answers without waiting: \(secondTook) after \(took)")
    }

    @Test func urls() throws {
        let acl = try RedisEndpoint(url: "rediss://app%40x:p%3Ass@cache.example:6380/2")
        #expect(acl.tls && acl.host == "cache.example" && acl.port == 6380 && acl.database == 2)
        #expect(acl.username == "app@x" && acl.password == "p:ss" && acl.serverHostname == "cache.example")
        let legacy = try RedisEndpoint(url: "redis://:pw@127.0.0.1")
        #expect(!legacy.tls && legacy.username == nil && legacy.password == "pw" && legacy.port == 6379 && legacy.serverHostname == nil)
        #expect(try RedisEndpoint(url: "redis://[::1]:7000").host == "::1")
        for bad in ["http://x:1", "redis://", "redis://h:1/x", "redis://h:1/-1", "redis://h:1/99999999", "redis://h:0", "rediss//h"] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisEndpoint(url: bad) }
        }
    }

    static func until(within limit: Duration = .seconds(5), _ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { throw RedisTestError("condition not met within \(limit)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}


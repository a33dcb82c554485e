import CoreMetrics
import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import Functions

struct RetryPolicyTests {
    @Test func fullJitterStaysUnderTheCeilingAndHonoursRetryAfter() {
        let policy = RetryPolicy(base: 2, cap: 60, horizon: 3600)
        #expect(policy.delay(afterAttempts: 1, retryAfter: nil, random: 1) == 2)
        #expect(policy.delay(afterAttempts: 3, retryAfter: nil, random: 1) == 8)
        #expect(policy.delay(afterAttempts: 30, retryAfter: nil, random: 1) == 60, "capped")
        #expect(policy.delay(afterAttempts: 3, retryAfter: nil, random: 0) == 0, "full jitter reaches zero")
        #expect(policy.delay(afterAttempts: 1, retryAfter: 30, random: 0.5) == 30, "never sooner than Retry-After")
        for attempts in 1...40 {
            let delay = policy.delay(afterAttempts: attempts, retryAfter: nil)
            #expect(delay >= 0 && delay <= 60)
        }
    }

    @Test func retryAfterIsDeltaSecondsBoundedToADay() {
        #expect(HostEmailClient.retryAfter("120") == 120)
        #expect(HostEmailClient.retryAfter("999999") == 86_400)
        for ignored in [nil, "", "1e308", "inf", "-5", "1.5", "9999999999", "Wed, 21 Oct 2026 07:28:00 UTC", "Wednesday, 21-Oct-26 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2026", "Xyz, 21 Oct 2026 07:28:00 GMT", "Wed, 32 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 24:00:00 GMT"]
        {
            #expect(HostEmailClient.retryAfter(ignored) == nil, "\(String(describing: ignored))")
        }
        // The HTTP-date form: seconds from now, a past date is "now", a far one at most a day.
        #expect(HostEmailClient.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == 0)
        #expect(HostEmailClient.retryAfter("Fri, 31 Dec 9999 23:59:59 GMT") == 86_400)
        #expect(Bounded.retryAfterSeconds("Sun, 06 Nov 1994 08:49:37 GMT", now: Date(timeIntervalSince1970: 784_111_757)) == 20)
        #expect(Bounded.retryAfterSeconds("Tue, 01 Dec 2026 12:00:00 GMT", now: Date(timeIntervalSince1970: 1_796_126_390)) == 10)
    }

    @Test func idempotencyKeysAreDeterministicPerTenant() {
        #expect(IdempotencyKeys.derived(tenant: "t-a", header: "k") == IdempotencyKeys.derived(tenant: "t-a", header: "k"))
        #expect(IdempotencyKeys.derived(tenant: "t-a", header: "k") != IdempotencyKeys.derived(tenant: "t-b", header: "k"))
        #expect(IdempotencyKeys.generated() != IdempotencyKeys.generated())
        #expect(!IdempotencyKeys.isValidHeader("") && !IdempotencyKeys.isValidHeader("a b") && !IdempotencyKeys.isValidHeader(String(repeating: "x", count: 256)))
    }
}

@Suite(.serialized) struct EmailTests {
    static let fastRetries = [
        "EMAIL_DISPATCH_SCHEDULE": "*/1 * * * * *", "EMAIL_RETRY_BASE_SECONDS": "0.2", "EMAIL_RETRY_MAX_SECONDS": "0.5",
    ]

    static func post(
        _ client: any TestClientProtocol, token: String, body: String, key: String? = nil
    ) async throws -> Reply {
        var headers: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
        if let key { headers[SendEmail.idempotencyKeyHeader] = key }
        return try await client.execute(uri: "/api/emails", method: .post, headers: headers, body: ByteBuffer(string: body)) {
            Reply(status: $0.status, headers: $0.headers, body: String(buffer: $0.body))
        }
    }

    static func waitUntil(_ condition: @Sendable () async throws -> Bool) async throws -> Bool {
        for _ in 0..<200 {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Postgres runs get a database of their own: a module host's dispatcher serves every tenant of
    /// its database, so one sharing the test database would deliver this test's rows elsewhere.
    static func isolated(_ backend: Backend, _ body: @escaping @Sendable (String) async throws -> Void) async throws {
        if backend == .postgres {
            try await ScratchDatabase.with { try await body($0.url) }
        } else {
            try await body(try backend.databaseURL())
        }
    }

    @Test(arguments: Backend.allCases) func idempotentSendsQueueWhileTheHostIsDownAndDeliverOnce(_ backend: Backend) async throws {
        try await Self.isolated(backend) { database in try await Self.sendsQueueAndDeliver(database) }
    }

    static func sendsQueueAndDeliver(_ database: String) async throws {
        let tenant = "mail-\(UUID().uuidString.prefix(6))"
        _ = try await StoreSetup.migrate(databaseURL: database, logger: ScratchDatabase.logger)
        try await LeadsHarness.run(databaseURL: database, extra: Self.fastRetries) { host, key, client in
            await LeadsHarness.grant(host, tenant: tenant, user: "u-1", ["EMAIL_SEND"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u-1")
            let body = #"{"template":"welcome","to":"ada@a.example","vars":{"name":"Ada","n":1}}"#

            let first = try await Self.post(client, token: token, body: body, key: "order-1")
            #expect(first.status == .accepted)
            #expect(first.json["status"] as? String == "sent")
            let messageID = try #require(first.json["message_id"] as? String)
            let idempotencyKey = try #require(first.json["idempotency_key"] as? String)
            let again = try await Self.post(client, token: token, body: body, key: "order-1")
            #expect(again.json["message_id"] as? String == messageID)
            #expect(again.json["idempotency_key"] as? String == idempotencyKey)
            #expect(await host.state.emailCalls[idempotencyKey] == 1, "the same key twice: one host call")
            #expect(await host.state.lastEmailAuthorization == "Bearer email-key-value")
            let reused = try await Self.post(client, token: token, body: body.replacingOccurrences(of: "Ada", with: "Bob"), key: "order-1")
            #expect(reused.status == .unprocessableContent)
            #expect(reused.code == "IDEMPOTENCY_KEY_REUSED")
            #expect(await host.state.totalEmailCalls == 1)

            for bad in [#"{"template":"welcome"}"#, #"{"template":"no spaces","to":"a@b.example"}"#, #"{"template":"t","to":"nope"}"#,
                        #"{"template":"t","to":"a@b.example","vars":[1]}"#, #"{"template":"t","to":"a@b.example","cc":"x@y.example"}"#, "[]"] {
                #expect(try await Self.post(client, token: token, body: bad).code == "VALIDATION_FAILED", "\(bad)")
            }
            #expect(try await Self.post(client, token: token, body: body, key: String(repeating: "k", count: 256)).code == "VALIDATION_FAILED")

            // Host down: queued, then delivered exactly once by the dispatcher when it is back.
            await host.state.set(emailFailure: (503, "1"))
            let queued = try await Self.post(client, token: token, body: body, key: "order-2")
            #expect(queued.status == .accepted)
            #expect(queued.json["status"] as? String == "queued")
            #expect(queued.json["message_id"] is NSNull)
            let queuedKey = try #require(queued.json["idempotency_key"] as? String)
            #expect(try await Self.waitUntil { await host.state.emailCalls[queuedKey] ?? 0 >= 2 }, "retried while down")
            await host.state.set(emailFailure: nil)
            #expect(try await Self.waitUntil { await host.state.emailAccepted[queuedKey] == 1 }, "delivered once the host is back")
            try await Task.sleep(for: .seconds(2))
            #expect(await host.state.emailAccepted[queuedKey] == 1, "and never again")
            let replay = try await Self.post(client, token: token, body: body, key: "order-2")
            #expect(replay.json["status"] as? String == "sent")
            #expect(replay.json["message_id"] as? String == DevHostStore.messageID(tenant: tenant, idempotencyKey: queuedKey))
        }
        try await withAuditStore(database) { store in
            let sent = try await chain(store, tenant).filter { $0.eventType == "EMAIL_SEND_REQUESTED" }
            #expect(sent.count == 2, "one event per accepted email")
            #expect(sent.allSatisfy { $0.details.jsonValue["message_id"]?.stringValue?.hasPrefix("dev-msg-") == true })
        }
    }

    /// Two dispatchers on one Postgres outbox at once: every row reaches the host exactly once.
    @Test func twoDispatchersNeverDoubleSend() async throws {
        let host = StandInHost()
        try await host.application().test(.live) { hostClient in
            await host.state.set(emailDelay: .milliseconds(20))  // long enough that both dispatchers overlap on a loaded machine
            try await ScratchDatabase.with { database in try await withAuditStore(database.url) { store in
                let tenant = "disp-\(UUID().uuidString.prefix(6))"
                let past = Timestamps.string(microseconds: Timestamps.nowMicroseconds() - 1_000_000)
                for index in 0..<60 {
                    let email = OutboxEmail(
                        tenantID: tenant.tenant, id: RequestIDs.generate(), idempotencyKey: "k-\(tenant)-\(index)", requestHash: "h", template: "t",
                        to: "a@b.example", vars: "{}", createdAt: Timestamps.now())
                    _ = try await store.enqueue(email, owner: "seed", leaseUntil: past)  // lease already expired: due now
                }
                // Two dispatchers as two instances would run them: each its own pool, sender and value.
                let (a, b) = try await withAuditStore(database.url) { otherStore in
                    func dispatcher(_ store: any ModuleStore) -> EmailOutboxDispatcher {
                        let sender = OutboxSender(
                            store: store, sender: HostEmailClient(baseURL: "http://127.0.0.1:\(hostClient.port ?? 0)/api", apiKey: "k"),
                            retry: RetryPolicy(), logger: ScratchDatabase.logger, metrics: NOOPMetricsHandler.instance)
                        return EmailOutboxDispatcher(store: store, outbox: sender, batchSize: 7)
                    }
                    let dispatcherA = dispatcher(store)
                    let dispatcherB = dispatcher(otherStore)
                    async let first = dispatcherA.dispatch(owner: "dispatcher-a", logger: ScratchDatabase.logger)
                    async let second = dispatcherB.dispatch(owner: "dispatcher-b", logger: ScratchDatabase.logger)
                    return try await (first, second)
                }
                #expect(a.sent + b.sent == 60)
                #expect(a.sent > 0 && b.sent > 0, "both took part: \(a.sent) + \(b.sent)")
                let accepted = await host.state.emailAccepted.filter { $0.key.hasPrefix("k-\(tenant)-") }
                #expect(accepted.count == 60)
                #expect(accepted.values.allSatisfy { $0 == 1 }, "no row sent twice")
                #expect(try await chain(store, tenant).filter { $0.eventType == "EMAIL_SEND_REQUESTED" }.count == 60)
            } }
        }
    }

    @Test func aRefusedRequestIsDeadAndSoIsOnePastTheHorizon() async throws {
        let host = StandInHost()
        try await host.application().test(.live) { hostClient in
            try await withAuditStore(try Backend.sqlite.databaseURL()) { store in
                let client = HostEmailClient(baseURL: "http://127.0.0.1:\(hostClient.port ?? 0)/api", apiKey: nil)
                func enqueue(_ name: String, createdAt: String) async throws -> OutboxEmail {
                    let email = OutboxEmail(
                        tenantID: "t-dead", id: RequestIDs.generate(), idempotencyKey: name, requestHash: "h", template: "t", to: "a@b.example",
                        vars: "{}", createdAt: createdAt)
                    _ = try await store.enqueue(email, owner: "me", leaseUntil: Timestamps.string(microseconds: Timestamps.nowMicroseconds() + 60_000_000))
                    return email
                }
                await host.state.set(emailFailure: (400, nil))
                let refused = try await enqueue("refused", createdAt: Timestamps.now())
                let sender = OutboxSender(store: store, sender: client, retry: RetryPolicy(), logger: ScratchDatabase.logger, metrics: NOOPMetricsHandler.instance)
                #expect(try await sender.attempt(refused, owner: "me") == .dead)
                #expect(try await store.outboxEmail(tenant: "t-dead", id: refused.id)?.status == .dead)

                await host.state.set(emailFailure: (503, nil))
                let old = try await enqueue("old", createdAt: Timestamps.string(microseconds: Timestamps.nowMicroseconds() - 7_200_000_000))
                let short = OutboxSender(
                    store: store, sender: client, retry: RetryPolicy(base: 2, cap: 10, horizon: 3600), logger: ScratchDatabase.logger,
                    metrics: NOOPMetricsHandler.instance)
                #expect(try await short.attempt(old, owner: "me") == .dead, "two hours old, horizon one hour")
                let fresh = try await enqueue("fresh", createdAt: Timestamps.now())
                #expect(try await short.attempt(fresh, owner: "me") == .queued)
                let row = try await store.outboxEmail(tenant: "t-dead", id: fresh.id)
                #expect(row?.status == .pending)
                #expect(row?.attempts == 1)
            }
        }
    }
}

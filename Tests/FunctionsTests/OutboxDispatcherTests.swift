import CoreMetrics
import Foundation
import FunctionRuntime
import HummingbirdTesting
import Logging
import TestSupport
import Testing

@testable import Functions

/// The outbox dispatcher's limits against real servers: its time budget, an outbox it cannot
/// read, and a row whose update was lost keeping its lease (docs/operations.md).
@Suite(.serialized) struct OutboxDispatcherTests {
    static func seed(_ store: any ModuleStore, tenant: String, count: Int) async throws -> [String] {
        let past = Timestamps.string(microseconds: Timestamps.nowMicroseconds() - 1_000_000)
        var keys: [String] = []
        for index in 0..<count {
            let key = "k-\(tenant)-\(index)"
            let email = OutboxEmail(
                tenantID: tenant.tenant, id: RequestIDs.generate(), idempotencyKey: key, requestHash: "h", template: "t",
                to: "a@b.example", vars: "{}", createdAt: Timestamps.now())
            _ = try await store.enqueue(email, owner: "seed", leaseUntil: past)  // lease already expired: due now
            keys.append(key)
        }
        return keys
    }

    static func dispatcher(
        _ store: any ModuleStore, hostPort: Int, batchSize: Int, budget: Duration = .seconds(20), sendTimeout: Duration = .seconds(5)
    ) -> EmailOutboxDispatcher {
        let sender = OutboxSender(
            store: store, sender: HostEmailClient(baseURL: "http://127.0.0.1:\(hostPort)/api", apiKey: "k", timeout: sendTimeout),
            retry: RetryPolicy(), logger: ScratchDatabase.logger, metrics: NOOPMetricsHandler.instance)
        return EmailOutboxDispatcher(store: store, outbox: sender, batchSize: batchSize, budget: budget)
    }

    /// One run stops claiming once its budget is spent (it finishes the batch in hand), so it never
    /// overlaps the next occurrence by much; the next run sends the rest.
    @Test func aRunStopsClaimingWhenItsBudgetIsSpent() async throws {
        let host = StandInHost()
        try await host.application().test(.live) { hostClient in
            await host.state.set(emailDelay: .milliseconds(100))
            try await ScratchDatabase.with { database in try await withAuditStore(database.url) { store in
                let tenant = "budget-\(UUID().uuidString.prefix(6))"
                _ = try await Self.seed(store, tenant: tenant, count: 40)
                let dispatcher = Self.dispatcher(store, hostPort: hostClient.port ?? 0, batchSize: 4, budget: .milliseconds(300))
                let started = ContinuousClock.now
                let first = try await dispatcher.dispatch(owner: "run-1", logger: ScratchDatabase.logger)
                let took = ContinuousClock.now - started
                #expect(first.sent >= 4 && first.sent < 40, "stopped early: \(first.sent)")
                #expect(took < .seconds(4), "the budget plus the batch in hand: \(took)")
                var total = first.sent
                for run in 2...40 where total < 40 {
                    total += try await dispatcher.dispatch(owner: "run-\(run)", logger: ScratchDatabase.logger).sent
                }
                #expect(total == 40, "later runs sent the rest")
                let accepted = await host.state.emailAccepted.filter { $0.key.hasPrefix("k-\(tenant)-") }
                #expect(accepted.count == 40 && accepted.values.allSatisfy { $0 == 1 })
            } }
        }
    }

    /// The outbox cannot be read (its database just crashed): the run fails as a 503, not a crash
    /// and not a silent success; when the database is back the rows are still due and go out once.
    @Test func anOutboxItCannotReadFailsTheRunAndLosesNothing() async throws {
        let host = StandInHost()
        let postgres = try OwnPostgres()
        try await postgres.start()
        try await host.application().test(.live) { hostClient in
            try await withAuditStore(postgres.url, deadline: .seconds(3)) { store in
                let tenant = "claim-\(UUID().uuidString.prefix(6))"
                let keys = try await Self.seed(store, tenant: tenant, count: 3)
                let dispatcher = Self.dispatcher(store, hostPort: hostClient.port ?? 0, batchSize: 10)
                try await postgres.stop(mode: "immediate")
                let started = ContinuousClock.now
                await #expect {
                    _ = try await dispatcher.dispatch(owner: "down", logger: ScratchDatabase.logger)
                } throws: { error in
                    (error as? FunctionError)?.status == .serviceUnavailable
                }
                #expect(ContinuousClock.now - started < .seconds(15))
                #expect(await host.state.totalEmailCalls == 0)
                try await postgres.start()
                var sent = 0
                _ = await eventually(timeout: .seconds(30), every: .milliseconds(500)) {
                    sent += (try? await dispatcher.dispatch(owner: "back", logger: ScratchDatabase.logger).sent) ?? 0
                    return sent >= 3
                }
                #expect(sent == 3)
                let calls = await host.state.emailCalls
                #expect(keys.allSatisfy { calls[$0] == 1 }, "\(calls)")
            }
        }
    }

    /// The host accepted a row but the database went away before the row was marked sent: the row
    /// keeps its lease (no other dispatcher takes it while it is leased), stays pending, and after
    /// the lease it is sent again with the same idempotency key — the host's deduplication makes it
    /// one email.
    @Test func aRowWhoseUpdateWasLostKeepsItsLease() async throws {
        let host = StandInHost()
        let postgres = try OwnPostgres()
        try await postgres.start()
        try await host.application().test(.live) { hostClient in
            try await withAuditStore(postgres.url, deadline: .seconds(3)) { store in
                let tenant = "lease-\(UUID().uuidString.prefix(6))"
                let keys = try await Self.seed(store, tenant: tenant, count: 1)
                await host.state.holdEmail()
                // The host holds the send for as long as crashing the database takes; past the 5 s send
                // timeout (a loaded coverage run) the send would fail first and be queued for retry while
                // the database was still up — another test. The send waits as long as the host holds it.
                let first = Self.dispatcher(store, hostPort: hostClient.port ?? 0, batchSize: 10, sendTimeout: .seconds(120))
                let run = Task { try await first.dispatch(owner: "dispatcher-a", logger: ScratchDatabase.logger) }
                // While the host holds the send, the database crashes; it is back only after the run.
                #expect(await eventually(timeout: .seconds(10)) { await host.state.emailArrivals == 1 })
                try await postgres.stop(mode: "immediate")
                await host.state.releaseEmail()
                let outcome = try await run.value
                #expect(outcome.sent == 0 && outcome.queued == 0, "the row could not be marked sent (nor queued): \(outcome)")
                #expect(await host.state.emailAccepted[keys[0]] == 1, "the host did accept it")
                try await postgres.start()
                let second = Self.dispatcher(store, hostPort: hostClient.port ?? 0, batchSize: 10)
                // Within the lease: nothing to claim (retried until the pool has reconnected).
                var claimedWithinLease: [OutboxEmail]?
                _ = await eventually(timeout: .seconds(20), every: .milliseconds(250)) {
                    let now = Timestamps.nowMicroseconds()
                    claimedWithinLease = try? await store.claimDue(
                        owner: "dispatcher-b", now: Timestamps.string(microseconds: now),
                        leaseUntil: Timestamps.string(microseconds: now + EmailOutboxDispatcher.lease), limit: 10)
                    return claimedWithinLease != nil
                }
                #expect(claimedWithinLease?.filter { $0.tenantID == tenant.tenant }.isEmpty == true, "the lease is kept")
                // Past the lease (its `now` moved forward): claimed again, sent with the same key.
                let later = Timestamps.nowMicroseconds() + EmailOutboxDispatcher.lease + 1_000_000
                let retried = try await store.claimDue(
                    owner: "dispatcher-b", now: Timestamps.string(microseconds: later),
                    leaseUntil: Timestamps.string(microseconds: later + EmailOutboxDispatcher.lease), limit: 10
                ).filter { $0.tenantID == tenant.tenant }
                #expect(retried.map(\.idempotencyKey) == keys)
                if let email = retried.first {
                    _ = try await second.outbox.attempt(email, owner: "dispatcher-b")
                    #expect(try await store.outboxEmail(tenant: tenant.tenant, id: email.id)?.status == .sent)
                }
                let calls = await host.state.emailCalls
                #expect(calls[keys[0]] == 2, "the same idempotency key both times: \(calls)")
            }
        }
    }
}

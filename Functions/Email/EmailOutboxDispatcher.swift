import CoreMetrics
import FunctionRuntime
import Logging

/// The `EmailOutboxDispatcher` timer function (`%EMAIL_DISPATCH_SCHEDULE%`, every 5 s by default):
/// leases due outbox rows in batches and gives each one attempt. Instances running it at the same
/// time lease disjoint rows; a row whose dispatcher died comes back when its lease expires.
struct EmailOutboxDispatcher: TimerFunction {
    static let lease: Int64 = 60_000_000
    let store: any ModuleStore
    let outbox: OutboxSender
    var batchSize = 20
    /// One run stops claiming after this long, so it never overlaps the next occurrence by much.
    var budget: Duration = .seconds(20)
    /// `fnhost_email_outbox_pending` and `fnhost_email_outbox_oldest_age_seconds`, after each run.
    let pending: Gauge
    let oldestAge: Gauge

    init(
        store: any ModuleStore, outbox: OutboxSender, batchSize: Int = 20, budget: Duration = .seconds(20),
        metrics: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.store = store
        self.outbox = outbox
        self.batchSize = batchSize
        self.budget = budget
        pending = Gauge(label: "fnhost_email_outbox_pending", factory: metrics)
        oldestAge = Gauge(label: "fnhost_email_outbox_oldest_age_seconds", factory: metrics)
    }

    func run(_ timer: TimerInfo, context: TimerContext) async throws {
        _ = try await dispatch(owner: "dispatcher:" + context.invocationID, logger: context.logger)
        if let backlog = try? await store.outboxBacklog() {
            pending.record(backlog.pending)
            let now = Timestamps.nowMicroseconds()
            let age = backlog.oldest.flatMap(Timestamps.microseconds).map { max(0, now - $0) / 1_000_000 } ?? 0
            oldestAge.record(Int(age))
        }
    }

    /// Returns how many rows were sent, retried later, and given up.
    func dispatch(owner: String, logger: Logger) async throws -> (sent: Int, queued: Int, dead: Int) {
        let started = ContinuousClock.now
        var counts = (sent: 0, queued: 0, dead: 0)
        while ContinuousClock.now - started < budget {
            let now = Timestamps.nowMicroseconds()
            let claimed: [OutboxEmail]
            do {
                claimed = try await store.claimDue(
                    owner: owner, now: Timestamps.string(microseconds: now), leaseUntil: Timestamps.string(microseconds: now + Self.lease),
                    limit: batchSize)
            } catch {
                throw FunctionError.serviceUnavailable("the outbox could not be read")
            }
            if claimed.isEmpty { break }
            for email in claimed {
                do {
                    switch try await outbox.attempt(email, owner: owner) {
                    case .sent: counts.sent += 1
                    case .queued: counts.queued += 1
                    case .dead: counts.dead += 1
                    }
                } catch {
                    // The row keeps its lease until it expires, then another run retries it.
                    logger.warning("outbox row not updated", metadata: ["outbox_id": .string(email.id), "reason": .string(error.description)])
                }
            }
            if claimed.count < batchSize { break }
        }
        if counts != (0, 0, 0) {
            logger.info(
                "email outbox dispatched",
                metadata: ["sent": .stringConvertible(counts.sent), "queued": .stringConvertible(counts.queued), "dead": .stringConvertible(counts.dead)])
        }
        return counts
    }
}

import Crypto
import FunctionRuntime

/// One row of `email_outbox`: a send request that must reach the host exactly once (the host
/// deduplicates on `idempotency_key`, the lease keeps two senders off one row).
struct OutboxEmail: Sendable, Equatable {
    enum Status: String, Sendable { case pending, sent, dead }

    var tenantID: TenantID
    var id: String
    var idempotencyKey: String
    /// SHA-256 of the request's canonical content: the same key with another body is refused.
    var requestHash: String
    var template: String
    var to: String
    /// The `vars` object as JSON text.
    var vars: String
    var status: Status = .pending
    var attempts = 0
    var messageID: String?
    var createdAt: String

    var request: EmailRequest {
        EmailRequest(tenantID: tenantID, template: template, to: to, vars: vars, idempotencyKey: idempotencyKey)
    }
}

/// `SendEmail`'s insert: the new row, or the row an earlier request with the same key made.
enum OutboxInsert: Sendable, Equatable {
    case inserted(OutboxEmail)
    case existing(OutboxEmail)
}

/// The outbox's storage, on PostgreSQL (`FOR UPDATE SKIP LOCKED` + lease) and SQLite
/// (`BEGIN IMMEDIATE` + lease).
protocol OutboxStore: Sendable {
    /// Inserts the row leased to `owner` (so no dispatcher takes it while the request tries the
    /// host itself), or returns the existing row of the tenant with the same idempotency key.
    func enqueue(_ email: OutboxEmail, owner: String, leaseUntil: String) async throws(StoreUnavailable) -> OutboxInsert
    /// Leases up to `limit` due pending rows whose lease is free or expired.
    func claimDue(owner: String, now: String, leaseUntil: String, limit: Int) async throws(StoreUnavailable) -> [OutboxEmail]
    /// Marks the row sent and appends `audit` in the same transaction, if `owner` still holds it.
    func markSent(_ email: OutboxEmail, owner: String, messageID: String, audit: AuditRecord) async throws(StoreUnavailable) -> Bool
    /// Counts an attempt, schedules the next one and releases the lease.
    func markRetry(_ email: OutboxEmail, owner: String, attempts: Int, nextAttemptAt: String, error: String) async throws(StoreUnavailable)
    /// Gives up on the row (status `dead`).
    func markDead(_ email: OutboxEmail, owner: String, attempts: Int, error: String) async throws(StoreUnavailable)
    func outboxEmail(tenant: TenantID, id: String) async throws(StoreUnavailable) -> OutboxEmail?
    /// Pending rows across tenants and the oldest one's `created_at` (for the backlog gauges).
    func outboxBacklog() async throws(StoreUnavailable) -> (pending: Int, oldest: String?)
}

/// Full-jitter exponential backoff with a horizon: retries stop (the row is dead) before the
/// host's idempotency window can expire, so a late retry never becomes a second email.
struct RetryPolicy: Sendable, Equatable {
    var base: Double = 2
    var cap: Double = 300
    var horizon: Double = 6 * 3600

    /// Seconds until the next attempt after `attempts` failures: uniform in 0…min(cap, base·2^(attempts-1)),
    /// never sooner than the host's `Retry-After`.
    func delay(afterAttempts attempts: Int, retryAfter: Double?, random: Double = Double.random(in: 0...1)) -> Double {
        let ceiling = min(cap, base * Double(1 << min(max(attempts - 1, 0), 30)))
        return max(ceiling * random, retryAfter ?? 0)
    }
}

enum IdempotencyKeys {
    /// The same header from the same tenant always yields the same key (and so the same host
    /// message id); tenants cannot collide.
    static func derived(tenant: TenantID, header: String) -> String {
        let tenant = tenant.text
        return "idem_" + Hex.encode(SHA256.hash(data: Array((tenant + "\n" + header).utf8)))
    }

    static func generated() -> String { "auto_" + RequestIDs.generate() }

    /// `Idempotency-Key`: 1…255 visible ASCII characters.
    static func isValidHeader(_ text: String) -> Bool {
        (1...255).contains(text.utf8.count) && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}

import Foundation
import FunctionRuntime
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import TestSupport
import Testing

@testable import Functions

/// `PageBatches`: listing pages read together, one call of `fnhost_leads_json_pages` per batch
/// (migration 12), each page matched back to its request by position.
@Suite struct PageBatchTests {
    /// The names of a page's items, as bytes.
    static func names(_ page: LeadPage) throws -> [[UInt8]] {
        try ListingPageTests.items(page).compactMap { ListingPageTests.fields($0)["name"] ?? nil }
    }

    /// Many tenants' pages read concurrently through one batcher — first pages and pages after a
    /// cursor, tenants whose ids differ only in ways `String` would blur (canonically equivalent
    /// spellings, case) — are each exactly the page that tenant gets alone, and batches did form.
    @Test func concurrentPagesOfManyTenantsAreEachTheirOwn() async throws {
        try await ScratchDatabase.with { database in
            let run = UUID().uuidString.prefix(6).lowercased()
            let tenants = (0..<10).map { "t-batch-\(run)-\($0)" } + ["t-batch-\(run)-caf\u{E9}", "t-batch-\(run)-cafe\u{301}", "t-batch-\(run)-CAF\u{C9}"]
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                for (number, tenant) in tenants.enumerated() {
                    for index in 0..<(4 + number % 5) {
                        try await store.create(
                            tenant: tenant.tenant, lead: ListingPageTests.lead("\(tenant) lead \(index)", at: index + 1), audit: record(tenant))
                    }
                }
                // Alone, one at a time: the reference pages (first page, then the page after its cursor).
                var expected: [(tenant: String, cursor: LeadCursor?, names: [[UInt8]], next: LeadCursor?)] = []
                for tenant in tenants {
                    let first = try await store.listPage(tenant: tenant.tenant, limit: 3, after: nil)
                    expected.append((tenant, nil, try Self.names(first), first.next))
                    if let cursor = first.next {
                        let second = try await store.listPage(tenant: tenant.tenant, limit: 3, after: cursor)
                        expected.append((tenant, cursor, try Self.names(second), second.next))
                    }
                }
                for entry in expected {
                    let prefix = Array("\(entry.tenant) lead ".utf8)
                    #expect(!entry.names.isEmpty && entry.names.allSatisfy { $0.starts(with: prefix) }, "\(entry.tenant)")
                }
                let reference = expected
                // Together: every reference page eight times over, all at once.
                let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<8 {
                        for entry in reference.shuffled() {
                            group.addTask {
                                let page = try await store.listPage(tenant: entry.tenant.tenant, limit: 3, after: entry.cursor)
                                let same = try Self.names(page) == entry.names && page.next == entry.next
                                return same ? 0 : 1
                            }
                        }
                    }
                    return try await group.reduce(0, +)
                }
                #expect(mismatches == 0)
                #expect(postgres.pool.pages.largestBatch > 1, "concurrent pages were read in batches")
            }
        }
    }

    /// A batch PostgreSQL refuses as a whole (one page's tenant holds a NUL byte, which no text
    /// column takes) is read again one page at a time: the good pages are answered, only the bad one
    /// fails. The batch forms behind a first page that waits on a table lock.
    @Test func aRefusedBatchIsReadOnePageAtATime() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                try await store.create(tenant: "t-good".tenant, lead: ListingPageTests.lead("good", at: 1), audit: record("t-good"))
                let batches = postgres.pool.pages
                let good = PageBatches.Request(tenant: "t-good".tenant, limit: 5, cursor: nil)
                let bad = PageBatches.Request(tenant: "t-\u{0}bad".tenant, limit: 5, cursor: nil)
                let results = try await Self.withLeadsLocked(database, for: .milliseconds(600)) {
                    // The first page waits for the lock; the next two wait for it, then go as one batch.
                    let first = Task { try await batches.page(good, deadline: .seconds(20)) }
                    try await Task.sleep(for: .milliseconds(150))
                    let second = Task { try await batches.page(good, deadline: .seconds(20)) }
                    let third = Task { () async -> Bool in (try? await batches.page(bad, deadline: .seconds(20))) == nil }
                    return (first, second, third)
                }
                #expect(try Self.names(try await results.0.value) == [Array("good".utf8)])
                #expect(try Self.names(try await results.1.value) == [Array("good".utf8)])
                #expect(await results.2.value, "the page PostgreSQL refuses fails")
                #expect(batches.largestBatch == 2)
            }
        }
    }

    /// A page waiting behind a batch that cannot finish (the table locked for 3 s) answers 503 at its
    /// own deadline, not when the batch ends; once the lock is gone the batcher reads pages again.
    @Test func aWaitingPageAnswersAtItsOwnDeadline() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                try await store.create(tenant: "t-late".tenant, lead: ListingPageTests.lead("late", at: 1), audit: record("t-late"))
                let batches = postgres.pool.pages
                let request = PageBatches.Request(tenant: "t-late".tenant, limit: 5, cursor: nil)
                let elapsed = try await Self.withLeadsLocked(database, for: .seconds(3)) {
                    let started = ContinuousClock.now
                    let stalled = Task { try? await batches.page(request, deadline: .seconds(20)) }
                    try await Task.sleep(for: .milliseconds(100))
                    await #expect(throws: StoreUnavailable.self) { try await batches.page(request, deadline: .milliseconds(300)) }
                    _ = stalled
                    return ContinuousClock.now - started
                }
                #expect(elapsed < .milliseconds(2500), "answered at its deadline, before the lock went away")
                #expect(try Self.names(try await batches.page(request, deadline: .seconds(20))) == [Array("late".utf8)])
            }
        }
    }

    /// Runs `body` while another session holds `leads` in ACCESS EXCLUSIVE mode, for at least `duration`.
    static func withLeadsLocked<T: Sendable>(
        _ database: ScratchDatabase, for duration: Duration, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let result = Mutex<T?>(nil)
        try await ScratchDatabase.superuser(database.adminURL) { admin in
            try await admin.withTransaction(logger: ScratchDatabase.logger) { connection in
                try await connection.query("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE", logger: ScratchDatabase.logger)
                let started = ContinuousClock.now
                let value = try await body()
                result.withLock { $0 = value }
                let left = duration - (ContinuousClock.now - started)
                if left > .zero { try await Task.sleep(for: left) }
            }
        }
        return try #require(result.withLock { $0 })
    }
}

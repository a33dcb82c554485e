import Foundation
import FunctionRuntime
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import TestSupport
import Testing

@testable import Functions

/// `CreateBatches`: creates without an idempotency key committed in batches, one statement of
/// `fnhost_create_leads` per batch (migration 13), each create matched back to its request by position.
@Suite struct CreateBatchTests {
    /// A lead whose text fields carry what a JSON round trip could blur: quotes, backslashes, control
    /// characters, line and paragraph separators, canonically equivalent spellings, astral characters.
    static func hostileLead(_ tenant: String, _ index: Int) -> Lead {
        let now = Timestamps.now()
        let name = ["caf\u{E9} \(index)", "cafe\u{301} \(index)", "\"quoted\" \\ \(index)", "tab\tand\u{1}\u{1F} \(index)"][index % 4]
        return Lead(
            id: RequestIDs.generate(), name: name, email: "x\(index)@example.test", phone: index % 2 == 0 ? nil : "+1 555 \u{2028}",
            company: index % 3 == 0 ? nil : "Co \u{1F600} \u{212A}", status: "new", notes: index % 5 == 0 ? nil : "line\nbreak \u{2029} </script>",
            createdBy: "u-\u{E9}", createdAt: now, updatedAt: now)
    }

    /// The fields of a lead as bytes, to compare without `String`'s canonical equivalence.
    static func bytes(_ lead: Lead) -> [[UInt8]?] {
        [lead.id, lead.name, lead.email, lead.phone, lead.company, lead.status, lead.notes, lead.createdBy].map { $0.map { Array($0.utf8) } }
    }

    /// Many tenants' creates at once — tenants whose ids differ only in ways `String` would blur — are
    /// each stored exactly as sent (every field's bytes), each with exactly one event naming it, every
    /// chain gapless and verified, and batches did form.
    @Test func concurrentCreatesOfManyTenantsAreEachCommittedWithTheirEvent() async throws {
        try await ScratchDatabase.with { database in
            let run = UUID().uuidString.prefix(6).lowercased()
            let tenants = (0..<6).map { "t-cb-\(run)-\($0)" } + ["t-cb-\(run)-caf\u{E9}", "t-cb-\(run)-cafe\u{301}", "t-cb-\(run)-CAF\u{C9}"]
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let sent = try await withThrowingTaskGroup(of: (String, Lead).self) { group in
                    for (number, tenant) in tenants.enumerated() {
                        for index in 0..<(6 + number % 4) {
                            group.addTask {
                                let lead = Self.hostileLead(tenant, index)
                                let outcome = try await store.create(
                                    tenant: tenant.tenant, lead: lead, audit: record(tenant, "LEAD_CREATED", ["lead_id": .string(lead.id)]))
                                #expect(outcome == .created)
                                return (tenant, lead)
                            }
                        }
                    }
                    return try await group.reduce(into: [(String, Lead)]()) { $0.append($1) }
                }
                #expect(postgres.pool.creates.largestBatch > 1, "concurrent creates were committed in batches")
                for tenant in tenants {
                    let mine = sent.filter { Array($0.0.utf8) == Array(tenant.utf8) }.map(\.1)
                    for lead in mine {
                        let stored = try #require(try await store.get(tenant: tenant.tenant, id: lead.id), "\(tenant) \(lead.id)")
                        #expect(Self.bytes(stored) == Self.bytes(lead), "stored exactly as sent")
                    }
                    let listed = try await store.list(tenant: tenant.tenant, limit: 100, after: nil)
                    #expect(listed.map(\.id).sorted() == mine.map(\.id).sorted(), "\(tenant): its own leads, all of them")
                    let events = try await chain(store, tenant)
                    #expect(events.map(\.seq) == Array(1...Int64(mine.count)), "gapless seq in \(tenant)")
                    #expect(events.allSatisfy { $0.tenantID.map { Array($0.utf8) } == Array(tenant.utf8) })
                    let named = events.compactMap { event -> String? in
                        guard case .object(let fields) = event.details, let field = fields.first(where: { $0.0 == "lead_id" }),
                            case .string(let id) = field.1
                        else { return nil }
                        return id
                    }
                    #expect(named.sorted() == mine.map(\.id).sorted(), "one event per lead, naming it")
                    let report = try await AuditChainVerifier(store: store).verify(tenant: tenant, full: true)
                    #expect(report.breaks.isEmpty && report.events == mine.count, "\(report.breaks)")
                }
            }
        }
    }

    /// A batch PostgreSQL refuses as a whole (one lead's notes hold a NUL byte, which no text column
    /// takes; another repeats a lead id) commits nothing and is written again one create at a time: the
    /// good creates are committed with their events, only the bad ones fail, and they leave no event.
    /// The batch forms behind a first create that waits on a table lock.
    @Test func aRefusedBatchIsWrittenOneCreateAtATime() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let tenant = "t-cb-refused"
                let first = newLead(tenant)
                let good = newLead(tenant)
                var withNUL = newLead(tenant)
                withNUL.notes = "before\u{0}after"
                let nul = withNUL
                let again = good  // the same id as `good`: whichever runs second is refused
                let results = try await PageBatchTests.withLeadsLocked(database, for: .milliseconds(600)) {
                    let head = Task { try await store.create(tenant: tenant.tenant, lead: first, audit: record(tenant)) }
                    try await Task.sleep(for: .milliseconds(150))
                    let tasks = [good, nul, again].map { lead in
                        Task { () async -> Bool in (try? await store.create(tenant: tenant.tenant, lead: lead, audit: record(tenant))) == .created }
                    }
                    return (head, tasks)
                }
                #expect(try await results.0.value == .created)
                var created: [Bool] = []
                for task in results.1 { created.append(await task.value) }
                #expect(created[1] == false, "the NUL byte is refused")
                #expect(created.filter { $0 }.count == 1, "one of the two creates of one id commits, the other is refused")
                #expect(postgres.pool.creates.largestBatch == 3)
                let listed = try await store.list(tenant: tenant.tenant, limit: 10, after: nil)
                #expect(listed.map(\.id).sorted() == [first.id, good.id].sorted())
                let events = try await chain(store, tenant)
                #expect(events.map(\.seq) == [1, 2], "an event for each committed lead, none for the refused")
                #expect(try await AuditChainVerifier(store: store).verify(tenant: tenant, full: true).breaks.isEmpty)
            }
        }
    }

    /// A create waiting behind a batch that cannot finish (the table locked for 3 s) answers 503 at its
    /// own deadline, not when the batch ends, and commits nothing even after the lock is gone; the
    /// batcher then writes creates again.
    @Test func aWaitingCreateAnswersAtItsOwnDeadlineAndCommitsNothing() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let tenant = "t-cb-late"
                let batches = postgres.pool.creates
                func item(_ lead: Lead) throws -> CreateBatches.Item {
                    let draft = try AuditEvent.sealed(record(tenant), eventID: RequestIDs.generate(), occurredAt: Timestamps.now(), after: .empty)
                    return CreateBatches.Item(tenant: tenant.tenant, lead: lead, draft: draft)
                }
                let stalledLead = newLead(tenant)
                let lateLead = newLead(tenant)
                let stalledItem = try item(stalledLead)
                let lateItem = try item(lateLead)
                let (elapsed, stalled) = try await PageBatchTests.withLeadsLocked(database, for: .seconds(3)) {
                    let started = ContinuousClock.now
                    let stalled = Task { try await batches.create(stalledItem, deadline: .seconds(20)) }
                    try await Task.sleep(for: .milliseconds(100))
                    await #expect(throws: StoreUnavailable.self) { try await batches.create(lateItem, deadline: .milliseconds(300)) }
                    return (ContinuousClock.now - started, stalled)
                }
                #expect(elapsed < .milliseconds(2500), "answered at its deadline, before the lock went away")
                #expect(try await stalled.value == .created, "the batch in flight commits once the lock is gone")
                let after = newLead(tenant)
                #expect(try await batches.create(try item(after), deadline: .seconds(20)) == .created)
                let listed = try await store.list(tenant: tenant.tenant, limit: 10, after: nil)
                #expect(listed.map(\.id).sorted() == [stalledLead.id, after.id].sorted(), "the late create committed nothing")
                #expect(try await chain(store, tenant).map(\.seq) == [1, 2])
            }
        }
    }

    /// The batch's JSON is what `fnhost_create_leads` reads: absent values are null, the details are
    /// their canonical JSON, the canonical form's parts are hex.
    @Test func theBatchIsOneObjectPerCreate() throws {
        let tenant = "t-cb-json"
        var lead = newLead(tenant)
        lead.name = "a\"b\\c\u{1}"
        let draft = try AuditEvent.sealed(
            record(tenant, "LEAD_CREATED", ["lead_id": .string(lead.id)]), eventID: RequestIDs.generate(), occurredAt: Timestamps.now(),
            after: .empty)
        let item = CreateBatches.Item(tenant: tenant.tenant, lead: lead, draft: draft)
        let text = CreateBatches.CreateLeadsStatement.json([item, item])
        let parsed = try JSONReader.parse(Array(text.utf8))
        guard case .array(let items) = parsed else {
            Issue.record("not an array: \(text)")
            return
        }
        #expect(items.count == 2)
        let object = try #require(items.first)
        #expect(object["name"]?.stringValue.map { Array($0.utf8) } == Array(lead.name.utf8))
        #expect(object["phone"] == .null && object["notes"] == .null)
        #expect(object["chain"]?.stringValue == tenant && object["event_tenant"]?.stringValue == tenant)
        #expect(object["before"]?.stringValue == Hex.encode(item.parts.before))
        #expect(object["after"]?.stringValue == Hex.encode(item.parts.after))
        #expect(object["details"]?["lead_id"]?.stringValue == lead.id)
    }
}

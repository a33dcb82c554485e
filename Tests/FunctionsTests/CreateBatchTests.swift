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
/// `fnhost_create_leads_each` per batch (migration 14), each create matched back to its request by
/// position, each failing alone.
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

    /// One create's bad value fails only that create, inside the batch: the batch is not refused, not
    /// written again, and the good creates commit with their events. The values bypass the request
    /// parser (the store is called directly): a name one Unicode scalar over the limit (101 graphemes,
    /// 201 scalars), notes holding a NUL byte, and a repeated lead id. The batch forms behind a first
    /// create that waits on a table lock.
    @Test func oneBadCreateInABatchFailsOnlyItself() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let tenant = "t-cb-refused"
                let first = newLead(tenant)
                let good = newLead(tenant)
                var overLong = newLead(tenant)
                overLong.name = String(repeating: "e\u{301}", count: 100) + "x"
                var withNUL = newLead(tenant)
                withNUL.notes = "before\u{0}after"
                let again = good  // the same id as `good`: whichever runs second is refused
                let leads = [good, overLong, withNUL, again]
                let results = try await PageBatchTests.withLeadsLocked(database, for: .milliseconds(600)) {
                    let head = Task { try await store.create(tenant: tenant.tenant, lead: first, audit: record(tenant)) }
                    try await Task.sleep(for: .milliseconds(150))
                    let tasks = leads.map { lead in
                        Task { () async -> Result<CreateOutcome, StoreUnavailable> in
                            do throws(StoreUnavailable) {
                                return .success(try await store.create(tenant: tenant.tenant, lead: lead, audit: record(tenant)))
                            } catch {
                                return .failure(error)
                            }
                        }
                    }
                    return (head, tasks)
                }
                #expect(try await results.0.value == .created)
                var outcomes: [Result<CreateOutcome, StoreUnavailable>] = []
                for task in results.1 { outcomes.append(await task.value) }
                #expect(postgres.pool.creates.largestBatch == 4, "the four creates were one batch")
                #expect(postgres.pool.creates.batchesRewritten == 0, "the batch was not refused nor written again")
                func answer(_ outcome: Result<CreateOutcome, StoreUnavailable>) -> FunctionError? {
                    if case .failure(let error) = outcome { error.functionError } else { nil }
                }
                #expect(answer(outcomes[1]) == .validationFailed("field 'name' holds a value the database refuses"))
                #expect(answer(outcomes[2])?.status == .badRequest, "the NUL byte is the client's error")
                let created = [outcomes[0], outcomes[3]].filter { if case .success(.created) = $0 { true } else { false } }
                #expect(created.count == 1, "one of the two creates of one id commits")
                #expect([outcomes[0], outcomes[3]].compactMap(answer).map(\.status) == [.badRequest], "the other is a 400")
                let listed = try await store.list(tenant: tenant.tenant, limit: 10, after: nil)
                #expect(listed.map(\.id).sorted() == [first.id, good.id].sorted())
                let events = try await chain(store, tenant)
                #expect(events.map(\.seq) == [1, 2], "an event for each committed lead, none for the refused")
                #expect(try await AuditChainVerifier(store: store).verify(tenant: tenant, full: true).breaks.isEmpty)
            }
        }
    }

    /// `fnhost_create_leads_each` called directly, bypassing every check of the module: each bad item
    /// (a name of 201 scalars, a `\u0000` no text column takes, an item that is not JSON, one without
    /// its tenant, an unknown status) comes back as its own row's SQLSTATE with nothing of it written,
    /// and every good item around them commits with its event, the chains still verifying.
    @Test func theFunctionCommitsEveryGoodItemAndReportsEachBadOne() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let tenants = ["t-each-a", "t-each-b"]
                func item(_ tenant: String, _ change: (inout Lead) -> Void = { _ in }) throws -> (CreateBatches.Item, Lead) {
                    var lead = newLead(tenant)
                    change(&lead)
                    let draft = try AuditEvent.sealed(
                        record(tenant, "LEAD_CREATED", ["lead_id": .string(lead.id)]), eventID: RequestIDs.generate(),
                        occurredAt: Timestamps.now(), after: .empty)
                    return (CreateBatches.Item(tenant: tenant.tenant, lead: lead, draft: draft), lead)
                }
                let good = try [item(tenants[0]), item(tenants[1]), item(tenants[0]), item(tenants[1])]
                let overLong = try item(tenants[0]) { $0.name = String(repeating: "n", count: LeadLimits.name + 1) }
                let badStatus = try item(tenants[1]) { $0.status = "maybe" }
                let nul = CreateBatches.CreateLeadsStatement.json(try item(tenants[0]).0)
                    .replacingOccurrences(of: #""name":"n""#, with: #""name":"a\u0000b""#)
                #expect(nul.contains(#"\u0000"#))
                let noTenant = CreateBatches.CreateLeadsStatement.json(try item(tenants[1]).0)
                    .replacingOccurrences(of: #""tenant":"t-each-b""#, with: #""tenant":null"#)
                // Bad items between the good ones, in both chains.
                let chains = [tenants[0], tenants[0], tenants[1], tenants[0], tenants[1], "t-each-a", tenants[1], tenants[1], tenants[0]]
                let items = [
                    CreateBatches.CreateLeadsStatement.json(good[0].0), CreateBatches.CreateLeadsStatement.json(overLong.0),
                    CreateBatches.CreateLeadsStatement.json(good[1].0), nul, noTenant, "not json",
                    CreateBatches.CreateLeadsStatement.json(badStatus.0), CreateBatches.CreateLeadsStatement.json(good[3].0),
                    CreateBatches.CreateLeadsStatement.json(good[2].0),
                ]
                let rows = try await postgres.client.withConnection { connection in
                    try await connection.rows(
                        CreateBatches.CreateLeadsStatement(limit: 10_000, chains: chains, items: items), .prepared, logger: ScratchDatabase.logger)
                }
                var sealed: [Int32] = []
                var refused: [Int32: StoreUnavailable] = [:]
                for row in rows {
                    switch row.outcome {
                    case .sealed: sealed.append(row.index)
                    case .refused(let failure): refused[row.index] = failure
                    }
                }
                #expect(sealed.sorted() == [1, 3, 8, 9], "every good item committed")
                #expect(refused.keys.sorted() == [2, 4, 5, 6, 7], "each bad item reported, alone")
                #expect(refused[2]?.kind == .refused(field: "name") && refused[2]?.description.contains("23514") == true)
                #expect(refused[7]?.kind == .refused(field: "status"))
                #expect(refused[4]?.functionError.status == .badRequest && refused[5]?.functionError.status == .badRequest)
                #expect(refused[6]?.functionError.status == .badRequest)
                for tenant in tenants {
                    let mine = good.filter { tenant.utf8.elementsEqual($0.0.tenant.text.utf8) }.map(\.1.id)
                    let listed = try await store.list(tenant: tenant.tenant, limit: 20, after: nil)
                    #expect(listed.map(\.id).sorted() == mine.sorted(), "\(tenant): the good items only")
                    #expect(try await chain(store, tenant).map(\.seq) == [1, 2], "one event per good item")
                    #expect(try await AuditChainVerifier(store: store).verify(tenant: tenant, full: true).breaks.isEmpty)
                }
                // What the function refuses as a whole: a batch it was not built for.
                await #expect(throws: PSQLError.self) {
                    try await postgres.client.withConnection { connection in
                        _ = try await connection.rows(
                            CreateBatches.CreateLeadsStatement(limit: 1_000, chains: ["x"], items: []), .prepared, logger: ScratchDatabase.logger)
                    }
                }
            }
        }
    }

    /// Migration 16: a full batch on one chain — the shape a single busy tenant sends — holds its head once and moves
    /// it once, and an item refused anywhere in the run leaves no gap: the next good item takes its seq, and the chain
    /// verifies. An item whose chain is not its tenant's is refused alone (its head is locked under its chain's scope).
    @Test func aFullBatchOnOneChainIsGaplessAroundRefusedItems() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let tenant = "t-run-a", other = "t-run-b"
                var chains: [String] = [], items: [String] = [], good: [String] = []
                var expectedRefused: [Int32] = []
                for index in 0..<CreateBatches.maxBatch {
                    var lead = newLead(tenant)
                    let refuse = index % 7 == 3
                    if refuse { lead.status = "maybe" }
                    let draft = try AuditEvent.sealed(
                        record(tenant, "LEAD_CREATED", ["lead_id": .string(lead.id)]), eventID: RequestIDs.generate(),
                        occurredAt: Timestamps.now(), after: .empty)
                    var json = CreateBatches.CreateLeadsStatement.json(CreateBatches.Item(tenant: tenant.tenant, lead: lead, draft: draft))
                    let mismatched = index == 10
                    if mismatched { json = json.replacingOccurrences(of: #""tenant":"t-run-a""#, with: #""tenant":"t-run-b""#) }
                    chains.append(tenant)
                    items.append(json)
                    if refuse || mismatched { expectedRefused.append(Int32(index + 1)) } else { good.append(lead.id) }
                }
                let rows = try await postgres.client.withConnection { connection in
                    try await connection.rows(
                        CreateBatches.CreateLeadsStatement(limit: 10_000, chains: chains, items: items), .prepared, logger: ScratchDatabase.logger)
                }
                var seqs: [Int64] = [], refused: [Int32] = []
                for row in rows.sorted(by: { $0.index < $1.index }) {
                    switch row.outcome {
                    case .sealed(let seal): seqs.append(seal.0)
                    case .refused(let failure):
                        refused.append(row.index)
                        #expect(failure.functionError.status == .badRequest)
                    }
                }
                #expect(refused == expectedRefused, "each bad item refused alone")
                #expect(seqs == Array(1...Int64(good.count)), "the good items take consecutive seqs, in position order")
                let events = try await chain(store, tenant)
                #expect(events.map(\.seq) == Array(1...Int64(good.count)))
                #expect(try await AuditChainVerifier(store: store).verify(tenant: tenant, full: true).breaks.isEmpty)
                let head = try #require(try await postgres.chainHead(tenant))
                let last = try #require(events.last)
                #expect(head.seq == Int64(good.count) && head.hash.utf8.elementsEqual(last.currentEventHash.utf8))
                let listed = try await store.list(tenant: tenant.tenant, limit: 100, after: nil)
                #expect(listed.map(\.id).sorted() == good.sorted())
                #expect(try await store.list(tenant: other.tenant, limit: 10, after: nil).isEmpty, "nothing written under the other tenant")
            }
        }
    }

    /// A batch the database fails as a whole — its most urgent create's lock wait ends at that create's
    /// deadline while another session holds its chain's head — commits nothing and is written again one
    /// create at a time: the create whose time ran out is 503, the other is created.
    @Test func aBatchFailingAsAWholeIsWrittenOneCreateAtATime() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let batches = postgres.pool.creates
                let (slow, free, held) = ("t-cb-slow", "t-cb-free", "t-cb-held")
                for tenant in [slow, held] { try await store.create(tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant)) }
                func item(_ tenant: String) throws -> CreateBatches.Item {
                    let draft = try AuditEvent.sealed(record(tenant), eventID: RequestIDs.generate(), occurredAt: Timestamps.now(), after: .empty)
                    return CreateBatches.Item(tenant: tenant.tenant, lead: newLead(tenant), draft: draft)
                }
                let (first, urgent, patient) = (try item(slow), try item(held), try item(free))
                let outcomes = try await Self.withChainHeadsLocked(database, [(slow, .seconds(1)), (held, .seconds(4))]) {
                    let head = Task { try await batches.create(first, deadline: .seconds(20)) }
                    try await Task.sleep(for: .milliseconds(100))
                    let late = Task { () async -> Bool in (try? await batches.create(urgent, deadline: .seconds(2))) == .created }
                    let other = Task { try await batches.create(patient, deadline: .seconds(20)) }
                    return (try await head.value, await late.value, try await other.value)
                }
                #expect(outcomes.0 == .created && outcomes.1 == false && outcomes.2 == .created)
                #expect(batches.batchesRewritten == 1, "the batch of two failed as a whole and was written again")
                #expect(try await chain(store, held).map(\.seq) == [1], "nothing of the late create committed")
                #expect(try await chain(store, free).map(\.seq) == [1])
            }
        }
    }

    /// A create alone (`fnhost_create_lead`) chosen as a deadlock's victim is written again inside its
    /// deadline: another session holds its chain's head and then waits for the create's own lead id;
    /// PostgreSQL aborts the create (40P01), which is retried once the other session has gone.
    @Test func aCreateChosenAsADeadlockVictimIsWrittenAgain() async throws {
        try await ScratchDatabase.with { database in
            try await withAuditStore(database.url) { store in
                let postgres = try #require(store as? Functions.PostgresDatabase)
                let tenant = "t-cb-deadlock"
                try await store.create(tenant: tenant.tenant, lead: newLead(tenant), audit: record(tenant))
                let lead = newLead(tenant)
                let draft = try AuditEvent.sealed(record(tenant), eventID: RequestIDs.generate(), occurredAt: Timestamps.now(), after: .empty)
                let item = CreateBatches.Item(tenant: tenant.tenant, lead: lead, draft: draft)
                let create = Mutex<Task<(CreateOutcome, Duration), any Error>?>(nil)
                try await ScratchDatabase.superuser(database.adminURL) { admin in
                    try await admin.withConnection { connection in
                        let log = ScratchDatabase.logger
                        // The create's session detects the deadlock (1 s), so it is the victim.
                        _ = try await connection.query("SET deadlock_timeout = '10s'", logger: log)
                        _ = try await connection.query("BEGIN", logger: log)
                        _ = try await connection.query("SELECT 1 FROM audit_chain_heads WHERE chain_id = \(tenant) FOR UPDATE", logger: log)
                        create.withLock {
                            $0 = Task {
                                let started = ContinuousClock.now
                                return (try await postgres.pool.creates.create(item, deadline: .seconds(20)), ContinuousClock.now - started)
                            }
                        }
                        // Once the create inserted its lead and waits for the head, wait for its lead id.
                        var waiting = false
                        while !waiting {
                            try await Task.sleep(for: .milliseconds(20))
                            for try await count in try await connection.query(
                                """
                                SELECT count(*) FROM pg_stat_activity
                                WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%fnhost_create_lead(%'
                                """,
                                logger: log
                            ).decode(Int.self) { waiting = count > 0 }
                        }
                        _ = try await connection.query(
                            """
                            INSERT INTO leads (tenant_id, id, name, email, status, created_by, created_at, updated_at)
                            VALUES (\(tenant), \(lead.id)::uuid, 'other', 'o@x.example', 'new', 'u', now(), now())
                            """, logger: log)
                        _ = try await connection.query("ROLLBACK", logger: log)
                    }
                }
                let (outcome, elapsed) = try await #require(create.withLock { $0 }).value
                #expect(outcome == .created && elapsed > .milliseconds(900), "retried after the deadlock, inside its deadline")
                #expect(try await store.get(tenant: tenant.tenant, id: lead.id)?.name == "n")
                #expect(try await chain(store, tenant).map(\.seq) == [1, 2])
            }
        }
    }

    /// Runs `body` once superuser sessions hold each chain's head (`SELECT … FOR UPDATE`), each for its
    /// own time from when it took it.
    static func withChainHeadsLocked<T: Sendable>(
        _ database: ScratchDatabase, _ locks: [(String, Duration)], _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let taken = StoreFailureTests.Attempts()
        return try await withThrowingTaskGroup(of: T?.self) { group in
            for (chain, duration) in locks {
                group.addTask {
                    try await ScratchDatabase.superuser(database.adminURL) { admin in
                        try await admin.withTransaction(logger: ScratchDatabase.logger) { connection in
                            _ = try await connection.query(
                                "SELECT 1 FROM audit_chain_heads WHERE chain_id = \(chain) FOR UPDATE", logger: ScratchDatabase.logger)
                            _ = taken.next()
                            try await Task.sleep(for: duration)
                        }
                    }
                    return nil
                }
            }
            group.addTask {
                while taken.value < locks.count { try await Task.sleep(for: .milliseconds(10)) }
                return try await body()
            }
            var result: T?
            for try await value in group { if let value { result = value } }
            return try #require(result)
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

    /// Each create's JSON is what `fnhost_create_leads_each` reads: absent values are null, the details
    /// are their canonical JSON, the canonical form's parts are hex; the chains travel beside the items.
    @Test func theBatchIsOneObjectPerCreate() throws {
        let tenant = "t-cb-json"
        var lead = newLead(tenant)
        lead.name = "a\"b\\c\u{1}"
        let draft = try AuditEvent.sealed(
            record(tenant, "LEAD_CREATED", ["lead_id": .string(lead.id)]), eventID: RequestIDs.generate(), occurredAt: Timestamps.now(),
            after: .empty)
        let item = CreateBatches.Item(tenant: tenant.tenant, lead: lead, draft: draft)
        let statement = CreateBatches.CreateLeadsStatement(limit: 1, items: [item, item])
        #expect(statement.items.count == 2 && statement.chains == [tenant, tenant])
        let object = try JSONReader.parse(Array(statement.items[0].utf8))
        #expect(object["name"]?.stringValue.map { Array($0.utf8) } == Array(lead.name.utf8))
        #expect(object["phone"] == .null && object["notes"] == .null)
        #expect(object["chain"] == nil && object["event_tenant"]?.stringValue == tenant)
        #expect(object["before"]?.stringValue == Hex.encode(item.parts.before))
        #expect(object["after"]?.stringValue == Hex.encode(item.parts.after))
        #expect(object["details"]?["lead_id"]?.stringValue == lead.id)
    }
}

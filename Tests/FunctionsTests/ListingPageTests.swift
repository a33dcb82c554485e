import Foundation
import FunctionRuntime
import Logging
import PostgresNIO
import Synchronization
import TestSupport
import Testing

@testable import Functions

/// `listPage`: a listing's page as one JSON array (PostgreSQL: one row from `fnhost_leads_json_pages`
/// over the JSON stored per change, migrations 10 and 12; SQLite: written from the leads).
@Suite struct ListingPageTests {
    /// Text that JSON must escape, and text it must not touch (compared on bytes).
    static let hostileNames = [
        "quote \" and backslash \\", "line\nbreak\ttab", "control \u{1}\u{1F}", "caf\u{E9}", "cafe\u{301}", "emoji 🧪", "\u{212A}elvin", "</script>",
    ]

    static func lead(_ name: String, at instant: Int) -> Lead {
        // Distinct, ordered creation times (microseconds), newest last.
        let createdAt = String(format: "2026-12-01T10:00:00.%06dZ", instant)
        return Lead(
            id: UUID().uuidString.lowercased(), name: name, email: "x\(instant)@example.test", phone: instant % 2 == 0 ? nil : "+1 555",
            company: "Co \"\(instant)\"", status: "new", notes: instant % 3 == 0 ? nil : "notes \(name)", createdBy: "u-\u{E9}",
            createdAt: createdAt, updatedAt: createdAt)
    }

    /// The fields of a lead as the API shows them, for comparison on bytes.
    static func fields(_ value: JSONValue) -> [String: [UInt8]?] {
        guard case .object(let object) = value else { return [:] }
        var fields: [String: [UInt8]?] = [:]
        for (key, value) in object {
            switch value {
            case .string(let text): fields[key] = Array(text.utf8)
            case .null: fields[key] = .some(nil)
            default: fields[key] = Array("unexpected \(value)".utf8)
            }
        }
        return fields
    }

    static func fields(_ lead: Lead) -> [String: [UInt8]?] {
        var writer = JSONWriter()
        lead.write(to: &writer)
        return (try? JSONReader.parse(writer.bytes)).map(fields) ?? [:]
    }

    static func items(_ page: LeadPage) throws -> [JSONValue] {
        guard case .array(let items) = try JSONReader.parse(Array(page.items.readableBytesView)) else { return [] }
        return items
    }

    /// Pages of 3 walk the tenant newest first, each lead exactly once and as written, the last page
    /// without a cursor; a page of exactly every lead has no cursor either; another tenant never shows.
    @Test(arguments: Backend.allCases) func pagesWalkTheTenantNewestFirstAsWritten(backend: Backend) async throws {
        let tenant = "t-page-\(UUID().uuidString.prefix(8))".tenant
        let other = "t-page-other-\(UUID().uuidString.prefix(8))".tenant
        try await withAuditStore(try backend.databaseURL()) { store in
            var written: [Lead] = []
            for (index, name) in Self.hostileNames.enumerated() {
                let lead = Self.lead(name, at: index + 1)
                try await store.create(tenant: tenant, lead: lead, audit: record(tenant.text))
                written.append(lead)
                try await store.create(tenant: other, lead: Self.lead("other \(index)", at: index + 1), audit: record(other.text))
            }
            let newestFirst = written.reversed().map(Self.fields)
            var seen: [[String: [UInt8]?]] = []
            var cursor: LeadCursor?
            var pages = 0
            repeat {
                let page = try await store.listPage(tenant: tenant, limit: 3, after: cursor)
                let items = try Self.items(page)
                #expect(items.count == 3 || page.next == nil, "only the last page is short")
                seen += items.map(Self.fields)
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(pages == 3)
            #expect(seen == newestFirst)
            let whole = try await store.listPage(tenant: tenant, limit: written.count, after: nil)
            #expect(whole.next == nil)
            #expect(try Self.items(whole).map(Self.fields) == newestFirst)
            let empty = try await store.listPage(tenant: "t-page-nobody".tenant, limit: 20, after: nil)
            #expect(String(buffer: empty.items) == "[]")
            #expect(empty.next == nil)
        }
    }

    /// Rows written before migration 10 have no stored JSON and are rendered on read: the page is the
    /// same bytes either way, and a change rewrites the stored JSON (the listing shows the update).
    @Test func storedJSONAndJSONRenderedOnReadAreTheSamePage() async throws {
        try await ScratchDatabase.with { database in
            let tenant = "t-stored".tenant
            try await withAuditStore(database.url) { store in
                var ids: [String] = []
                for (index, name) in Self.hostileNames.enumerated() {
                    let lead = Self.lead(name, at: index + 1)
                    try await store.create(tenant: tenant, lead: lead, audit: record(tenant.text))
                    ids.append(lead.id)
                }
                let stored = try await store.listPage(tenant: tenant, limit: 5, after: nil)
                let storedCount = Mutex(-1)
                try await ScratchDatabase.superuser(database.adminURL) { client in
                    for try await count in try await client.query("SELECT count(*)::int FROM leads WHERE api_json IS NOT NULL", logger: ScratchDatabase.logger)
                        .decode(Int.self)
                    {
                        storedCount.withLock { $0 = count }
                    }
                    // As before migration 10: no stored JSON (the trigger is what would fill it again).
                    _ = try await client.query("ALTER TABLE leads DISABLE TRIGGER leads_api_json", logger: ScratchDatabase.logger)
                    _ = try await client.query("UPDATE leads SET api_json = NULL", logger: ScratchDatabase.logger)
                    _ = try await client.query("ALTER TABLE leads ENABLE TRIGGER leads_api_json", logger: ScratchDatabase.logger)
                }
                #expect(storedCount.withLock { $0 } == Self.hostileNames.count, "every write stored its JSON")
                let rendered = try await store.listPage(tenant: tenant, limit: 5, after: nil)
                #expect(Array(rendered.items.readableBytesView) == Array(stored.items.readableBytesView))
                #expect(rendered.next == stored.next)
                #expect(stored.next != nil)

                var fields = LeadFields()
                fields.name = .set("renamed \u{212A}")
                let updated = try await store.update(
                    tenant: tenant, id: ids[ids.count - 1], fields: fields, updatedAt: "2026-12-02T00:00:00.000000Z", audit: record(tenant.text))
                #expect(updated != nil)
                let after = try Self.items(try await store.listPage(tenant: tenant, limit: 1, after: nil))
                #expect(after.first.map(Self.fields)?["name"] == .some(Array("renamed \u{212A}".utf8)))
                #expect(after.first.map(Self.fields)?["updated_at"] == .some(Array("2026-12-02T00:00:00.000000Z".utf8)))
            }
        }
    }

    /// A statement first run before its function existed (postgres-nio remembers a failed preparation
    /// for the connection's life) does not keep failing once the function is there: the refused
    /// connection is replaced. One connection in the pool, so a poisoned one would fail every call.
    @Test func aStatementRefusedBeforeItsMigrationWorksOnceTheSchemaIsThere() async throws {
        try await ScratchDatabase.with { database in
            _ = try await withAuditStore(database.url) { _ in 0 }  // migrated
            var configuration = try PostgresURL.configuration(database.url)
            configuration.options.maximumConnections = 1
            let client = PostgresClient(configuration: configuration, backgroundLogger: ScratchDatabase.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                let store = Functions.PostgresDatabase(client: client, logger: ScratchDatabase.logger, deadline: .seconds(30))
                let tenant = "t-poison".tenant
                try await store.create(tenant: tenant, lead: Self.lead("kept", at: 1), audit: record(tenant.text))
                let rename = "ALTER FUNCTION fnhost_leads_json_pages(text[], bigint[], text[], text[]) RENAME TO fnhost_leads_json_pages_away"
                let back = "ALTER FUNCTION fnhost_leads_json_pages_away(text[], bigint[], text[], text[]) RENAME TO fnhost_leads_json_pages"
                try await ScratchDatabase.superuser(database.adminURL) { admin in
                    _ = try await admin.query(PostgresQuery(unsafeSQL: rename), logger: ScratchDatabase.logger)
                }
                await #expect(throws: StoreUnavailable.self) { try await store.listPage(tenant: tenant, limit: 5, after: nil) }
                try await ScratchDatabase.superuser(database.adminURL) { admin in
                    _ = try await admin.query(PostgresQuery(unsafeSQL: back), logger: ScratchDatabase.logger)
                }
                let page = try await store.listPage(tenant: tenant, limit: 5, after: nil)
                #expect(try Self.items(page).map(Self.fields).compactMap { $0["name"] ?? nil } == [Array("kept".utf8)])
                let again = try await store.listPage(tenant: tenant, limit: 5, after: nil)
                #expect(again.items == page.items)
            }
        }
    }
}

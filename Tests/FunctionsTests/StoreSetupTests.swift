import Foundation
import TestSupport
import FunctionRuntime
import Logging
import Synchronization
import Testing

@testable import Functions

/// The database-backed schedule monitor, migration modes and the in-process cache, on real stores.
@Suite struct StoreSetupTests {
    @Test(arguments: Backend.allCases)
    func scheduleStatusAndClaimsLiveInTheDatabase(backend: Backend) async throws {
        try await withAuditStore(try backend.databaseURL()) { store in
            let monitor = DatabaseScheduleMonitor(store: store, owner: "test")
            let name = "Fn\(UUID().uuidString.prefix(8))"
            #expect(try await monitor.status(of: name) == nil)
            let occurrence = Date(timeIntervalSince1970: 1_790_000_000)
            #expect(try await monitor.claim(function: name, occurrence: occurrence), "the first instance claims it")
            #expect(try await !monitor.claim(function: name, occurrence: occurrence), "the second does not")
            #expect(try await monitor.claim(function: name, occurrence: occurrence.addingTimeInterval(60)))
            let status = ScheduleStatus(last: occurrence, next: occurrence.addingTimeInterval(60), lastUpdated: occurrence.addingTimeInterval(1))
            try await monitor.update(function: name, status: status)
            #expect(try await monitor.status(of: name) == status)
            // A late writer with an older run never moves the status back.
            try await monitor.update(
                function: name,
                status: ScheduleStatus(last: occurrence.addingTimeInterval(-60), next: occurrence, lastUpdated: occurrence))
            #expect(try await monitor.status(of: name) == status)
            let later = ScheduleStatus(last: status.next, next: status.next.addingTimeInterval(60), lastUpdated: status.next)
            try await monitor.update(function: name, status: later)
            #expect(try await monitor.status(of: name) == later)
        }
    }

    /// The permission table a migrated database holds is the module's built-in one, rule for rule:
    /// a permission added in code without a migration inserting its row would be held by nobody
    /// once `module_permissions` is loaded (a silent 403).
    @Test(arguments: Backend.allCases)
    func everyBuiltInPermissionIsSeededByTheMigrations(_ backend: Backend) async throws {
        let url = backend == .postgres ? nil : try backend.databaseURL()
        let check: @Sendable (any ModuleStore) async throws -> Void = { store in
            let rows = try await store.permissionRows()
            let stored = Dictionary(rows.map { ($0.0, PermissionRule(permission: ModulePermission(rawValue: $0.0) ?? .leadsRead, readOnly: $0.1, stepUp: $0.2)) }) { first, _ in first }
            let builtIn = Dictionary(uniqueKeysWithValues: PermissionAllowlist.specification.rules.map { ($0.key.rawValue, $0.value) })
            #expect(stored == builtIn)
        }
        if let url {
            try await withAuditStore(url) { try await check($0) }
        } else {
            try await ScratchDatabase.with { database in try await withAuditStore(database.url) { try await check($0) } }
        }
    }

    @Test func migrationModesAndURLsAreChecked() async throws {
        let root = try IdentityHarness.scriptRoot()
        for (extra, expected) in [
            (["DATABASE_URL": "sqlite::memory:", "DATABASE_MIGRATIONS": "sometimes"], "DATABASE_MIGRATIONS must be auto or manual"),
            (["DATABASE_URL": "mysql://x@y/z"], "DATABASE_URL must be postgres"),
            (["DATABASE_URL": "postgres://u@127.0.0.1:1/db", "DATABASE_MIGRATIONS": "sometimes"], "DATABASE_MIGRATIONS must be auto or manual"),
        ] {
            do {
                _ = try await FunctionHost.build(
                    options: .init(scriptRoot: root, port: 0), module: ProbeModuleBox().module,
                    environment: IdentityHarness.hostSettings(1, extra: extra), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
                Issue.record("\(extra) was accepted")
            } catch {
                #expect(String(describing: error).contains(expected), "\(error)")
            }
        }
    }

    @Test func manualMigrationsReportASchemaBehind() async throws {
        try await ScratchDatabase.with { database in
            let logs = CapturedLines()
            let logger = Logger(label: "t") { _ in logs.handler }
            let host = try await FunctionHost.build(
                options: .init(scriptRoot: try IdentityHarness.scriptRoot(), port: 0), module: ProbeModuleBox().module,
                environment: IdentityHarness.hostSettings(1, extra: ["DATABASE_URL": database.url, "DATABASE_MIGRATIONS": "manual"]),
                logger: logger)
            try await host.application().test(.live) { _ in }
            #expect(logs.lines.contains { $0.contains("schema is behind") && $0.contains("fnhost migrate") })
        }
    }

    @Test func inProcessCacheExpiresEvictsAndDeletesByPrefix() async throws {
        let cache = InProcessCache(capacity: 4)
        #expect(!cache.isShared)
        try await cache.set("a:1", [1], ttl: .milliseconds(30))
        try await Task.sleep(for: .milliseconds(60))
        #expect(try await cache.get("a:1") == nil, "expired")
        for index in 0..<6 { try await cache.set("p:\(index)", [UInt8(index)], ttl: .seconds(60)) }
        var present = 0
        for index in 0..<6 where try await cache.get("p:\(index)") != nil { present += 1 }
        #expect(present <= 4, "bounded by its capacity")
        try await cache.set("q:1", [1], ttl: .seconds(60))
        #expect(try await cache.deletePrefix("q:") == 1)
        #expect(try await cache.get("q:1") == nil)
        #expect(await cache.ping())
    }
}

/// Log lines captured as text (for start-up messages).
final class CapturedLines: Sendable {
    private let storage = Mutex<[String]>([])
    var lines: [String] { storage.withLock { $0 } }
    var handler: LogHandler { CapturingHandler(sink: self) }

    func append(_ line: String) { storage.withLock { $0.append(line) } }

    private struct CapturingHandler: LogHandler {
        let sink: CapturedLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        var metadataProvider: Logger.MetadataProvider?

        func log(event: LogEvent) {
            var merged = metadata
            if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
            if let extra = event.metadata { merged.merge(extra) { $1 } }
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            sink.append("\(event.level) \(event.message) \(fields)")
        }
    }
}

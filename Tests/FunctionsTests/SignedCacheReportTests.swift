import Foundation
import FunctionRuntime
import Logging
import Prometheus
import TestSupport
import Testing

@testable import Functions

/// Entries that fail their seal: counted every time, logged at most once per key per process, the set of
/// keys already logged bounded (docs/redis.md, "Entries that fail their seal"). Junk planted under many
/// keys and read again at every refresh must not flood the log.
struct SignedCacheReportTests {
    static let warning = "shared cache entry failed authentication; ignored"

    static func rejectedTotal(_ registry: PrometheusCollectorRegistry) -> String? {
        var text: [UInt8] = []
        registry.emit(into: &text)
        return String(decoding: text, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("fnhost_cache_entries_rejected_total ") }.map(String.init)
    }

    @Test func aRejectedEntryIsCountedEveryTimeAndLoggedOncePerKey() async throws {
        let base = InProcessCache()
        let registry = PrometheusCollectorRegistry()
        let logs = CapturedLogs()
        let cache = SignedCache(
            base: base, signingKey: SignedCache.generatedKey(), logger: logs.logger(), metrics: PrometheusMetricsFactory(registry: registry),
            reportedKeys: 3)
        // Junk under five keys, read four times over (as a refresh would), plus one genuine entry.
        for index in 0..<5 { try await base.set("rbac:t:\(index)", Array("planted \(index)".utf8), ttl: .seconds(60)) }
        try await cache.set("rbac:t:good", Array("answer".utf8), ttl: .seconds(60))
        for _ in 0..<4 {
            for index in 0..<5 { #expect(try await cache.get("rbac:t:\(index)") == nil) }
            #expect(try await cache.get("rbac:t:good") == Array("answer".utf8))
        }
        // A sealed value read by other means (a hash field, a channel message) goes through the same count.
        #expect(cache.verified(Array("junk".utf8), key: "rbac:t:0") == nil)
        #expect(cache.verified(cache.seal(Array("ok".utf8), key: "chan"), key: "chan") == Array("ok".utf8))
        #expect(Self.rejectedTotal(registry) == "fnhost_cache_entries_rejected_total 21")

        let lines = logs.lines
        let perKey = lines.filter { $0["msg"] as? String == Self.warning }
        #expect(perKey.compactMap { $0["cache_key"] as? String } == ["rbac:t:0", "rbac:t:1", "rbac:t:2"], "each of the first three keys once")
        let overflow = lines.filter { ($0["msg"] as? String)?.contains("further keys are only counted") == true }
        #expect(overflow.count == 1, "one line says the rest are only counted")
        #expect(lines.count == 4, "\(lines)")
        #expect(!logs.text.contains("planted"), "the planted value is never logged")
    }

    /// The standard bound: 10,000 keys logged one by one, one line when it is reached, then nothing more for
    /// any key, old or new (forgetting the set when full would log the same keys again). Keys are bytes:
    /// `é` precomposed and decomposed are two keys.
    @Test func theSetOfReportedKeysIsBoundedAndNeverForgets() {
        let reports = RejectionReports(capacity: RejectionReports.standardCapacity)
        #expect(reports.capacity == 10_000)
        var verdicts: [RejectionReports.Verdict: Int] = [:]
        for index in 0..<10_000 { verdicts[reports.first("k:\(index)"), default: 0] += 1 }
        #expect(verdicts == [.key: 10_000])
        #expect(reports.first("k:new") == .capacityReached)
        for index in [0, 1, 9_999] { #expect(reports.first("k:\(index)") == .alreadyReported) }
        #expect(reports.first("k:another") == .alreadyReported)
        #expect(reports.first("k:new") == .alreadyReported)

        let small = RejectionReports(capacity: 2)
        #expect(small.first("caf\u{E9}") == .key)
        #expect(small.first("cafe\u{301}") == .key, "canonically equal, different bytes")
        #expect(small.first("caf\u{E9}") == .alreadyReported)
        #expect(RejectionReports(capacity: -1).first("x") == .capacityReached)
    }
}

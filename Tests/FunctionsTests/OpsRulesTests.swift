import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import Testing

@testable import Functions

/// The dashboard and the alert rules use only metrics the module exports: every metric name in
/// their expressions is in a live `/metrics` (or is a recording rule of `alerts.yml`, or a series
/// Prometheus itself provides).
struct OpsRulesTests {
    static let fromPrometheus: Set<String> = ["up", "probe_success", "time"]

    static func metricNames(in expression: String, recorded: Set<String>) -> Set<String> {
        var names: Set<String> = []
        for match in expression.matches(of: #/[a-z_][a-z0-9_:]*/#) {
            let name = String(match.output)
            if name.hasPrefix("fnhost_") || name.hasPrefix("audit_") || name.hasPrefix("fnhost:") { names.insert(name) }
        }
        return names.subtracting(recorded)
    }

    @Test func dashboardAndAlertsUseExportedMetrics() async throws {
        let repo = Repository.root
        let alerts = try String(contentsOf: repo.appendingPathComponent("ops/prometheus/alerts.yml"), encoding: .utf8)
        let recorded = Set(alerts.matches(of: #/record: ([a-z0-9_:]+)/#).map { String($0.output.1) })
        #expect(recorded.count >= 4)
        var used: Set<String> = []
        for match in alerts.matches(of: #/expr: \|?\s*((?:.|\n)*?)(?=\n\s*(?:for:|labels:|- record:|- alert:|annotations:|$))/#) {
            used.formUnion(Self.metricNames(in: String(match.output.1), recorded: recorded))
        }
        let dashboard = try JSONSerialization.jsonObject(with: Data(contentsOf: repo.appendingPathComponent("ops/grafana/fnhost.json"))) as? [String: Any]
        let panels = try #require(dashboard?["panels"] as? [[String: Any]])
        #expect(panels.count >= 8)
        for panel in panels {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                used.formUnion(Self.metricNames(in: target["expr"] as? String ?? "", recorded: recorded))
            }
        }
        #expect(used.count >= 12, "\(used.sorted())")
        let wanted = used
        try await LeadsHarness.run(.postgres) { _, _, client in  // the cross-tenant counter is PostgreSQL's
            let text = try await client.execute(
                uri: "/metrics", method: .get, headers: [.authorization: "Bearer metrics-token-value"]
            ) { String(buffer: $0.body) }
            var exported: Set<String> = []
            for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count >= 4 else { continue }
                let name = String(parts[2])
                exported.insert(name)
                if parts[3] == "histogram" { exported.formUnion([name + "_bucket", name + "_count", name + "_sum"]) }
            }
            let missing = wanted.filter { !exported.contains($0) }.sorted()
            #expect(missing.isEmpty, "not exported: \(missing)")
        }
    }
}

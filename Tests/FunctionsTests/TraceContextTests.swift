import Foundation
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import Functions

struct TraceparentTests {
    @Test func parsingFollowsW3CTraceContext() throws {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let parsed = try #require(TraceContext.parse(valid))
        #expect(Hex.encode(parsed.traceID) == "4bf92f3577b34da6a3ce929d0e0e4736" && Hex.encode(parsed.spanID) == "00f067aa0ba902b7" && parsed.sampled)
        #expect(TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled == false)
        #expect(TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future") != nil, "later versions: first fields")
        for bad in [
            "", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            #expect(TraceContext.parse(bad) == nil, "\(bad)")
        }
        let continued = TraceContext.start(from: valid)
        #expect(Hex.encode(continued.traceID) == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(continued.parentSpanID.map(Hex.encode) == "00f067aa0ba902b7" && continued.spanID != parsed.spanID)
        let fresh = TraceContext.start(from: "garbage")
        #expect(fresh.parentSpanID == nil && TraceContext.parse(fresh.traceparent) != nil)
        let child = continued.child()
        #expect(child.traceID == continued.traceID && child.parentSpanID == continued.spanID && child.spanID != continued.spanID)
    }

    @Test func everyLogLineOfAnInvocationGetsItsIDs() throws {
        let trace = TraceContext.start(from: nil)
        let inside = TraceContext.$current.withValue(trace) { TraceContext.metadataProvider.get() }
        #expect(inside["trace_id"] == .string(trace.traceIDText) && inside["span_id"] == .string(trace.spanIDText))
        #expect(TraceContext.metadataProvider.get().isEmpty, "nothing outside an invocation")
    }

    /// An incoming traceparent is continued into every host call; without one a new trace starts;
    /// the invocation's log lines carry trace_id and span_id.
    @Test func hostCallsCarryTheInvocationsTrace() async throws {
        let logs = CapturedLines()
        let key = try TestKey.make(kid: "k1")
        let host = StandInHost()
        await host.state.set(keys: [key])
        await LeadsHarness.grant(host, tenant: "t-trace", user: "u-1", ["LEADS_READ"])
        try await host.application().test(.live) { hostClient in
            let settings = IdentityHarness.hostSettings(hostClient.port ?? 0, extra: ["DATABASE_URL": try Backend.sqlite.databaseURL()])
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-trace-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                at: ModuleManifestTests.repositoryURL.appendingPathComponent("function.json"), to: root.appendingPathComponent("function.json"))
            let functionHost = try await FunctionHost.build(
                options: .init(scriptRoot: root.path, port: 0), module: FunctionHostModule(), environment: settings,
                logger: Logger(label: "t") { _ in logs.handler })
            try await functionHost.application().test(.live) { client in
                let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                let token = try LeadsHarness.token(key, tenant: "t-trace", user: "u-1")
                let answer = try await client.execute(
                    uri: "/api/leads", method: .get, headers: [.authorization: "Bearer \(token)", HTTPField.Name("traceparent")!: incoming]
                ) { $0.status }
                #expect(answer == .ok)
                let calls = await host.state.traceparents
                #expect(Set(calls.map(\.path)).isSuperset(of: ["jwks", "rbac"]), "\(calls)")
                for call in calls {
                    let parsed = try #require(TraceContext.parse(call.value), "\(call.path): '\(call.value)'")
                    #expect(Hex.encode(parsed.traceID) == "0af7651916cd43dd8448eb211c80319c", "\(call.path) continues the caller's trace")
                    #expect(Hex.encode(parsed.spanID) != "b7ad6b7169203331", "a span of its own")
                }
                let lines = logs.lines.filter { $0.contains("0af7651916cd43dd8448eb211c80319c") }
                #expect(lines.contains { $0.contains("Executed 'Functions.ListLeads'") && $0.contains("span_id") }, "\(logs.lines.suffix(5))")

                // No traceparent: a new trace, still propagated.
                await LeadsHarness.grant(host, tenant: "t-trace", user: "u-2", ["LEADS_READ"])
                let before = await host.state.traceparents.count
                let second = try LeadsHarness.token(key, tenant: "t-trace", user: "u-2")
                #expect(try await client.send(.get, "/api/leads", token: second).status == .ok)
                let fresh = await host.state.traceparents.dropFirst(before)
                #expect(!fresh.isEmpty)
                for call in fresh {
                    let parsed = try #require(TraceContext.parse(call.value))
                    #expect(Hex.encode(parsed.traceID) != "0af7651916cd43dd8448eb211c80319c")
                }
            }
        }
    }
}

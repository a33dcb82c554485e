import Foundation
import TestSupport
import Testing

/// Runs the real `fnhost` binary (built by `swift build`; `FNHOST_BIN` overrides the path)
/// as a user would: `fnhost start` in a script root, over real sockets.
@Suite(.serialized) struct FnhostProcessTests {

    @Test func startServesHealthMetricsAndJSONLogs() async throws {
        let root = try ScriptRoot.repository()
        let process = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root])
        defer { process.terminate() }
        let port = try await process.waitForPort()

        let (healthStatus, healthBody, healthHeaders) = try await HTTP.get("http://127.0.0.1:\(port)/health")
        #expect(healthStatus == 200)
        #expect(healthBody == #"{"status":"ok"}"#)
        #expect(healthHeaders["X-Request-Id"] != nil)

        let (readyStatus, _, _) = try await HTTP.get("http://127.0.0.1:\(port)/health/ready")
        #expect(readyStatus == 200)

        let (metricsStatus, metrics, _) = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
        #expect(metricsStatus == 200)
        #expect(metrics.contains(#"fnhost_function_invocations_total{function="Health",trigger="httpTrigger",outcome="success"} 1"#))

        let (missingStatus, missingBody, _) = try await HTTP.get("http://127.0.0.1:\(port)/api/nothing")
        #expect(missingStatus == 404)
        #expect(missingBody.contains(#""code":"NOT_FOUND""#))

        process.terminate()
        let status = await process.waitForExit()
        #expect(status == 0, "SIGTERM drains and exits cleanly")
        let lines = process.stdoutLines
        #expect(!lines.isEmpty)
        for line in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "not a JSON object: \(line)")
        }
        #expect(lines.contains { $0.contains("Executed 'Functions.Health' (Succeeded") && $0.contains(#""request_id":"#) })
        #expect(lines.contains { $0.contains(#""msg":"Host stopped""#) })
    }

    @Test func portComesFromLocalSettings() async throws {
        let port = try FreePort.pick()
        let root = try ScriptRoot.make(
            manifest: try String(contentsOf: Repository.root.appendingPathComponent("function.json"), encoding: .utf8),
            localSettings: #"{"IsEncrypted":false,"Values":{"ENVIRONMENT":"development"},"Host":{"LocalHttpPort":\#(port)}}"#)
        let process = try FnhostProcess.start(arguments: ["start", "--script-root", root])
        defer { process.terminate() }
        #expect(try await process.waitForPort() == port)
        let (status, _, _) = try await HTTP.get("http://127.0.0.1:\(port)/health")
        #expect(status == 200)
    }

    /// The repository's manifest with one thing broken: (change, function named, reason).
    static func brokenManifest(_ change: String) throws -> String {
        let data = try Data(contentsOf: Repository.root.appendingPathComponent("function.json"))
        guard var root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            var functions = root["functions"] as? [String: Any]
        else { throw ProcessError("function.json is not an object") }
        func http(_ route: String) -> [String: Any] {
            ["bindings": [
                ["type": "httpTrigger", "direction": "in", "name": "req", "methods": ["get"], "route": route],
                ["type": "http", "direction": "out", "name": "res"],
            ]]
        }
        switch change {
        case "missing entry": functions["HealthReady"] = nil
        case "missing handler": functions["Ghost"] = http("ghost")
        case "bad route": functions["Health"] = http("health/{")
        case "clash": functions["HealthReady"] = http("health")
        case "unknown binding":
            functions["Health"] = ["bindings": [["type": "blobTrigger", "direction": "in", "name": "blob", "path": "x"]]]
        case "unset setting": functions["Health"] = http("%HEALTH_ROUTE%")
        case "bad schedule":
            functions["HealthReady"] = ["bindings": [["type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 0 25 * * *"]]]
        default: break
        }
        root["functions"] = functions
        return String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
    }

    static let brokenManifests: [(String, String, String)] = [
        ("missing entry", "HealthReady", "no entry in function.json"),
        ("missing handler", "Ghost", "no handler is registered"),
        ("bad route", "Health", "does not parse"),
        ("clash", "HealthReady", "clashes with function 'Health'"),
        ("unknown binding", "Health", "binding type 'blobTrigger' is not supported"),
        ("unset setting", "Health", "HEALTH_ROUTE"),
    ]

    @Test(arguments: brokenManifests)
    func brokenManifestStopsStartupWithOneLineNamingTheFunction(change: String, function: String, reason: String) async throws {
        let root = try ScriptRoot.make(manifest: try Self.brokenManifest(change))
        let process = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root])
        defer { process.terminate() }
        let status = await process.waitForExit(timeout: .seconds(30))
        #expect(status == 1)
        let stderr = process.stderrText.split(separator: "\n")
        #expect(stderr.count == 1, "one line: \(process.stderrText)")
        let line = String(stderr.first ?? "")
        #expect(line.contains("function '\(function)'"), "\(line)")
        #expect(line.contains(reason), "\(line)")
        #expect(process.stdoutLines.contains { $0.contains(#""level":"critical""#) && $0.contains(function) })
    }

    @Test func unknownScheduleSettingAndScheduleErrorsAreReported() async throws {
        let root = try ScriptRoot.make(manifest: try Self.brokenManifest("bad schedule"))
        let process = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root])
        defer { process.terminate() }
        #expect(await process.waitForExit(timeout: .seconds(30)) == 1)
        #expect(process.stderrText.contains("function 'HealthReady': schedule '0 0 25 * * *' does not parse"))
    }

    @Test func helpListsTheSubcommands() async throws {
        let process = try FnhostProcess.start(arguments: ["--help"])
        #expect(await process.waitForExit() == 0)
        let text = process.stdoutText
        for subcommand in ["start", "serve", "package", "migrate", "verify-audit", "token", "dev-host"] {
            #expect(text.contains("  \(subcommand) "), "\(subcommand) in: \(text)")
        }
    }
}

/// A development emulator whose Postgres is unreachable still serves (data requests 503, the
/// migration retried in the background) and stops on SIGTERM instead of hanging in start-up.
@Suite struct UnreachableDatabaseTests {
    @Test func startsServesAndStopsWithoutItsDatabase() async throws {
        let root = try ScriptRoot.repository()
        let dead = try FreePort.pick()
        let host = try FnhostProcess.start(
            arguments: ["start", "--port", "0", "--script-root", root],
            environment: ["DATABASE_URL": "postgres://fnhost:x@127.0.0.1:\(dead)/fnhost?sslmode=disable"])
        defer { host.terminate() }
        let base = "http://127.0.0.1:\(try await host.waitForPort(timeout: .seconds(40)))"
        #expect(try await HTTP.get(base + "/health").0 == 200)
        let token = try await LeadsFlowTests.token(root, tenant: "t-down", user: "u-1", ["--perm", "LEADS_READ"])
        let (status, body, _) = try await HTTP.get(base + "/api/leads", headers: ["Authorization": "Bearer \(token)"])
        #expect(status == 503, "\(body)")
        #expect(body.contains("SERVICE_UNAVAILABLE"))
        host.terminate()
        #expect(await host.waitForExit(timeout: .seconds(20)) != nil, "SIGTERM stops it")
        #expect(host.stdoutLines.contains { $0.contains("migrations not applied yet") })
    }
}

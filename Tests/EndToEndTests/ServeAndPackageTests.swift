import Foundation
import Testing

/// `fnhost package` writes the deployment layout; `fnhost serve` runs from it as the Azure host starts it.
@Suite(.serialized) struct ServeAndPackageTests {
    static func package() throws -> URL {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-package-\(UUID().uuidString)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FnhostProcess.binary)
        process.arguments = ["package", "--out", out.path, "--script-root", FnhostProcessTests.repositoryRoot.path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ProcessError("fnhost package exited \(process.terminationStatus)") }
        return out
    }

    static func json(_ url: URL) throws -> NSDictionary {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        guard let dictionary = object as? NSDictionary else { throw ProcessError("\(url.path) is not a JSON object") }
        return dictionary
    }

    @Test func packageLayoutMatchesTheManifest() throws {
        let out = try Self.package()
        let manifest = try Self.json(FnhostProcessTests.repositoryRoot.appendingPathComponent("function.json"))
        let functions = try #require(manifest["functions"] as? NSDictionary)
        let entries = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(entries == (["fnhost", "host.json"] + (functions.allKeys as? [String] ?? [])).sorted())
        for case let name as String in functions.allKeys {
            let written = try Self.json(out.appendingPathComponent(name).appendingPathComponent("function.json"))
            #expect(written == (functions[name] as? NSDictionary), "\(name)/function.json equals its manifest entry")
        }
        let host = try Self.json(out.appendingPathComponent("host.json"))
        #expect(host["version"] as? String == "2.0")
        let customHandler = try #require(host["customHandler"] as? NSDictionary)
        let description = try #require(customHandler["description"] as? NSDictionary)
        #expect(description["defaultExecutablePath"] as? String == "fnhost")
        #expect(description["arguments"] as? [String] == ["serve"])
        #expect(customHandler["enableForwardingHttpRequest"] as? Bool == true)
        #expect(((host["extensions"] as? NSDictionary)?["http"] as? NSDictionary)?["routePrefix"] as? String == "")
        #expect(host["functionTimeout"] as? String != nil)
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("local.settings.json").path))

        let help = Process()
        help.executableURL = out.appendingPathComponent("fnhost")
        help.arguments = ["--help"]
        help.currentDirectoryURL = out
        let pipe = Pipe()
        help.standardOutput = pipe
        try help.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        help.waitUntilExit()
        #expect(help.terminationStatus == 0)
        #expect(text.contains("serve") && text.contains("package") && text.contains("start"))
    }

    @Test func packageRefusesANonEmptyFolderWithoutForce() throws {
        let out = try Self.package()
        let again = Process()
        again.executableURL = URL(fileURLWithPath: FnhostProcess.binary)
        again.arguments = ["package", "--out", out.path, "--script-root", FnhostProcessTests.repositoryRoot.path]
        let errors = Pipe()
        again.standardOutput = FileHandle.nullDevice
        again.standardError = errors
        try again.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        again.waitUntilExit()
        #expect(again.terminationStatus == 1)
        #expect(text.contains("--force"))
    }

    @Test func serveFromThePackageAnswersTheAzureHost() async throws {
        let out = try Self.package()
        let port = try FnhostProcess.freePort()
        let process = try FnhostProcess.start(
            arguments: ["serve", "--script-root", out.path],
            environment: ["FUNCTIONS_CUSTOMHANDLER_PORT": String(port), "FUNCTIONS_CUSTOMHANDLER_WORKER_ID": "w1"])
        defer { process.terminate() }
        #expect(try await process.waitForPort() == port)

        let (readyStatus, _, _) = try await HTTP.get("http://127.0.0.1:\(port)/")
        #expect(readyStatus == 200)

        let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/health?probe=1","Method":"GET","Query":{"probe":"1"},"Headers":{"Accept":["*/*"],"X-Request-Id":["azure-req-1"]},"Params":{},"Identities":[]}},"Metadata":{"Query":{"probe":"1"},"Headers":{"Accept":"*/*"},"probe":"1","sys":{"MethodName":"Health","UtcNow":"2026-11-22T08:00:00Z","RandGuid":"35e6a6a4-1111-4a7c-9a3b-111111111111"}}}"#
        let (status, body, headers) = try await HTTP.post(
            "http://127.0.0.1:\(port)/Health", body: payload,
            headers: ["Content-Type": "application/json; charset=utf-8", "X-Azure-Functions-InvocationId": "inv-1"])
        #expect(status == 200)
        #expect(headers["Content-Type"] == "application/json; charset=utf-8")
        #expect(body == #"{"Outputs":{"res":{"statusCode":200,"headers":{"Content-Type":"application/json; charset=utf-8","X-Request-Id":"azure-req-1"},"body":"{\"status\":\"ok\"}"}},"Logs":[],"ReturnValue":null}"#)

        let (forwardedStatus, forwardedBody, _) = try await HTTP.get("http://127.0.0.1:\(port)/health")
        #expect(forwardedStatus == 200)
        #expect(forwardedBody == #"{"status":"ok"}"#)

        process.terminate()
        #expect(await process.waitForExit() == 0)
        #expect(process.stdoutLines.contains { $0.contains("Executed 'Functions.Health' (Succeeded, Id=azure-req-1)") })
    }

    @Test func productionSecretsNeverReachTheOutput() async throws {
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-secret-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        let values = [
            "HOST_JWKS_URI": "https://host.example/jwks-secret-path-1",
            "HOST_RBAC_API_KEY": "rbac-key-secret-2", "HOST_EMAIL_API_KEY": "email-key-secret-3",
            "WEBHOOK_HMAC_SECRET": "whsec_c2VjcmV0LXdlYmhvb2stNA==", "DATABASE_URL": "postgres://app:db-pass-5@db/app",
            "METRICS_TOKEN": "metrics-token-secret-6",
        ]
        for (name, value) in values { try Data(value.utf8).write(to: secrets.appendingPathComponent(name)) }
        let root = try FnhostProcess.scriptRoot(
            manifest: try String(contentsOf: FnhostProcessTests.repositoryRoot.appendingPathComponent("function.json"), encoding: .utf8))
        let process = try FnhostProcess.start(
            arguments: ["start", "--port", "0", "--script-root", root],
            environment: ["ENVIRONMENT": "production", "SECRETS_PROVIDER": "files:\(secrets.path)", "LOG_LEVEL": "trace"])
        defer { process.terminate() }
        let port = try await process.waitForPort()
        let (denied, _, _) = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
        #expect(denied == 401)
        let (allowed, metrics, _) = try await HTTP.get(
            "http://127.0.0.1:\(port)/metrics", headers: ["Authorization": "Bearer metrics-token-secret-6"])
        #expect(allowed == 200)
        #expect(metrics.contains("fnhost_function_invocations_total"))
        process.terminate()
        _ = await process.waitForExit()
        let output = process.stdoutText + process.stderrText + metrics
        for (name, value) in values {
            #expect(!output.contains(value), "\(name) leaked")
        }

        try FileManager.default.removeItem(at: secrets.appendingPathComponent("HOST_RBAC_API_KEY"))
        let missing = try FnhostProcess.start(
            arguments: ["start", "--port", "0", "--script-root", root],
            environment: ["ENVIRONMENT": "production", "SECRETS_PROVIDER": "files:\(secrets.path)"])
        #expect(await missing.waitForExit() == 1)
        #expect(missing.stderrText.contains("required secret HOST_RBAC_API_KEY is not set"))
        for (_, value) in values { #expect(!(missing.stdoutText + missing.stderrText).contains(value)) }
    }
}

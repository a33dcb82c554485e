import Foundation
import TestSupport
import Testing

/// `fnhost package` writes the deployment layout; `fnhost serve` runs from it as the Azure host starts it.
@Suite(.serialized) struct ServeAndPackageTests {
    static func package() async throws -> URL {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-package-\(UUID().uuidString)")
        let run = try await runProgram(FnhostProcess.binary, ["package", "--out", out.path, "--script-root", Repository.root.path])
        guard run.status == 0 else { throw ProcessError("fnhost package exited \(run.status): \(run.output)") }
        return out
    }

    static func json(_ url: URL) throws -> NSDictionary {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        guard let dictionary = object as? NSDictionary else { throw ProcessError("\(url.path) is not a JSON object") }
        return dictionary
    }

    @Test func packageLayoutMatchesTheManifest() async throws {
        let out = try await Self.package()
        let manifest = try Self.json(Repository.root.appendingPathComponent("function.json"))
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
        #expect(customHandler["enableProxyingHttpRequest"] as? Bool == true)
        #expect(customHandler["enableForwardingHttpRequest"] == nil, "the predecessor option is not written")
        #expect(((host["extensions"] as? NSDictionary)?["http"] as? NSDictionary)?["routePrefix"] as? String == "")
        #expect(host["functionTimeout"] as? String != nil)
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("local.settings.json").path))

        let (status, text) = try await runProgram(out.appendingPathComponent("fnhost").path, ["--help"], directory: out)
        #expect(status == 0)
        #expect(text.contains("serve") && text.contains("package") && text.contains("start"))
    }

    /// The deployment zip (Flex Consumption deploys one zip): every file of the folder, valid CRCs,
    /// and `fnhost` still executable (mode 0755 in the entry's Unix attributes).
    @Test func packageZipKeepsTheExecutableBit() async throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-zip-\(UUID().uuidString)")
        let zip = out.path + ".zip"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FnhostProcess.binary)
        process.arguments = ["package", "--out", out.path, "--zip", zip, "--script-root", Repository.root.path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        #expect(process.terminationStatus == 0)
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = [
            "python3", "-c",
            """
            import zipfile,sys,os
            z=zipfile.ZipFile(sys.argv[1])
            assert z.testzip() is None, 'bad CRC'
            names=set(z.namelist())
            want=set(os.path.relpath(os.path.join(d,f), sys.argv[2]) for d,_,fs in os.walk(sys.argv[2]) for f in fs)
            assert names == want, (names ^ want)
            mode=(z.getinfo('fnhost').external_attr >> 16) & 0o7777
            assert mode == 0o755, oct(mode)
            assert z.read('host.json') == open(os.path.join(sys.argv[2], 'host.json'),'rb').read()
            print('ok', len(names))
            """,
            zip, out.path,
        ]
        let output = Pipe()
        check.standardOutput = output
        check.standardError = output
        try check.run()
        while check.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(check.terminationStatus == 0, "\(text)")
        #expect(text.hasPrefix("ok "))
    }

    @Test func packageRefusesANonEmptyFolderWithoutForce() async throws {
        let out = try await Self.package()
        let again = Process()
        again.executableURL = URL(fileURLWithPath: FnhostProcess.binary)
        again.arguments = ["package", "--out", out.path, "--script-root", Repository.root.path]
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
        let out = try await Self.package()
        let port = try FreePort.pick()
        let process = try FnhostProcess.start(
            arguments: ["serve", "--script-root", out.path],
            // Development said explicitly: `serve` is production unless the deployment says otherwise.
            environment: ["FUNCTIONS_CUSTOMHANDLER_PORT": String(port), "FUNCTIONS_CUSTOMHANDLER_WORKER_ID": "w1", "ENVIRONMENT": "development"])
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

    /// The real module under `fnhost serve` with no ENVIRONMENT is production: without its required secrets it
    /// refuses to start, naming the first one missing (it once started as development with open metrics).
    @Test func serveWithoutEnvironmentRefusesToStartWithoutSecrets() async throws {
        let out = try await Self.package()
        // Empty is unset; FnhostProcess already drops ENVIRONMENT from the inherited environment.
        var environment = ["FUNCTIONS_CUSTOMHANDLER_PORT": String(try FreePort.pick()), "SECRETS_PROVIDER": "env"]
        for name in ["HOST_JWKS_URI", "HOST_RBAC_API_KEY", "HOST_EMAIL_API_KEY", "WEBHOOK_HMAC_SECRET", "DATABASE_URL",
                     "METRICS_TOKEN", "AUDIT_SIGNING_KEY", "REDIS_URL"] {
            environment[name] = ""
        }
        let process = try FnhostProcess.start(arguments: ["serve", "--script-root", out.path], environment: environment)
        defer { process.terminate() }
        #expect(await process.waitForExit(timeout: .seconds(20)) == 1, "serve without ENVIRONMENT must not start: \(process.stdoutText)")
        #expect(process.stderrText.contains("required secret") && process.stderrText.contains("is not set"), "\(process.stderrText)")
    }

    @Test func productionSecretsNeverReachTheOutput() async throws {
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-secret-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        let values = [
            "HOST_JWKS_URI": "https://host.example/jwks-secret-path-1",
            "HOST_RBAC_API_KEY": "rbac-key-secret-2", "HOST_EMAIL_API_KEY": "email-key-secret-3",
            "WEBHOOK_HMAC_SECRET": "whsec_c2VjcmV0LXdlYmhvb2stNA==", "DATABASE_URL": "postgres://app:db-pass-5@db/app",
            "METRICS_TOKEN": "metrics-token-secret-6", "AUDIT_SIGNING_KEY": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ]
        for (name, value) in values { try Data(value.utf8).write(to: secrets.appendingPathComponent(name)) }
        let root = try ScriptRoot.repository()
        let process = try FnhostProcess.start(
            arguments: ["start", "--port", "0", "--script-root", root],
            environment: [
                "ENVIRONMENT": "production", "SECRETS_PROVIDER": "files:\(secrets.path)", "LOG_LEVEL": "trace",
                "JWT_ISSUER": "https://host.example", "JWT_AUDIENCE": "fnhost", "HOST_RBAC_API_URL": "https://host.example/api",
                "HOST_EMAIL_API": "https://host.example/api",
            ])
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

/// The Azure host sends invocation payloads with `Transfer-Encoding: chunked`.
@Suite struct ChunkedInvocationTests {
    @Test func chunkedPayloadIsAccepted() async throws {
        let root = try ScriptRoot.repository()
        let port = try FreePort.pick()
        let process = try FnhostProcess.start(
            arguments: ["serve", "--script-root", root],
            environment: ["FUNCTIONS_CUSTOMHANDLER_PORT": String(port), "ENVIRONMENT": "development"])
        defer { process.terminate() }
        _ = try await process.waitForPort()
        let payload = #"{"Data":{"req":{"Url":"http://localhost:7071/health","Method":"GET","Query":{},"Headers":{"X-Request-Id":["chunky-1"]},"Params":{}}},"Metadata":{}}"#
        let half = payload.utf8.count / 2
        let first = String(decoding: Array(payload.utf8)[..<half], as: UTF8.self)
        let second = String(decoding: Array(payload.utf8)[half...], as: UTF8.self)
        let request = "POST /Health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\n"
            + "Transfer-Encoding: chunked\r\nX-Azure-Functions-InvocationId: inv-chunked\r\nConnection: close\r\n\r\n"
            + String(first.utf8.count, radix: 16) + "\r\n" + first + "\r\n"
            + String(second.utf8.count, radix: 16) + "\r\n" + second + "\r\n0\r\n\r\n"
        let answer = try RawSocket.exchange(port: port, request: request)
        #expect(answer.hasPrefix("HTTP/1.1 200"))
        #expect(answer.contains(#"{"Outputs":{"res":{"statusCode":200,"headers":{"Content-Type":"application/json; charset=utf-8","X-Request-Id":"chunky-1"},"body":"{\"status\":\"ok\"}"}},"Logs":[],"ReturnValue":null}"#))
    }
}

enum RawSocket {
    /// Sends raw bytes to 127.0.0.1:port and reads until the server closes the connection.
    static func exchange(port: Int, request: String) throws -> String {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ProcessError("socket failed") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ProcessError("connect failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let written = bytes[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
            guard written > 0 else { throw ProcessError("send failed") }
            sent += written
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received.append(contentsOf: buffer[..<count])
        }
        return String(decoding: received, as: UTF8.self)
    }
}

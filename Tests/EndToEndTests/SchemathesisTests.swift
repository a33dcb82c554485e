import Foundation
import TestSupport
import Testing

/// schemathesis (property-based API testing from the OpenAPI document) against a live `fnhost`
/// with a valid development token: every response matches the document, and the server never answers 500.
@Suite(.serialized) struct SchemathesisTests {
    @Test func liveAPIConformsToItsOpenAPIDocument() async throws {
        let root = try ScriptRoot.repository()
        let host = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root])
        defer { host.terminate() }
        let port = try await host.waitForPort()
        let (tokenStatus, tokenOutput, _) = try await DevHostTests.run([
            "token", "--tenant", "t-schema", "--user", "u-schema", "--perm", "LEADS_READ", "--perm", "LEADS_WRITE",
            "--perm", "LEADS_DELETE", "--perm", "EXPORTS_EXECUTE", "--mfa", "--script-root", root,
        ])
        #expect(tokenStatus == 0)
        let token = try #require(tokenOutput.split(separator: "\n").last.map(String.init))

        // Schema-valid requests may be refused in documented ways: a reused Idempotency-Key with another
        // body is the contract's 422 (schemathesis sends one key with several bodies).
        let config = URL(fileURLWithPath: root).appendingPathComponent("schemathesis.toml")
        try Data(
            """
            [checks.positive_data_acceptance]
            expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

            """.utf8
        ).write(to: config)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "schemathesis", "--config-file", config.path, "run", "http://127.0.0.1:\(port)/openapi.json", "-H", "Authorization: Bearer \(token)",
            // Every check but the generic "no 5xx": a 503 under load is documented and correct;
            // the contract's "zero 500s" is checked exactly in the server's own log below.
            "--max-examples", "30", "--checks", "all", "--exclude-checks", "not_a_server_error", "--seed", "20261122",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        process.environment = environment
        // schemathesis keeps a cache in its working directory: keep it out of the repository.
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // Read off the cooperative pool (2 threads here): a 15 s blocking read there stalls every other test.
        let handle = output.fileHandleForReading
        let text: String = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let data = handle.readDataToEndOfFile()
                while process.isRunning { usleep(10_000) }
                continuation.resume(returning: String(decoding: data, as: UTF8.self))
            }
        }
        #expect(process.terminationStatus == 0, "\(text.suffix(3000))")
        host.terminate()
        _ = await host.waitForExit()
        let serverErrors = host.stdoutLines.filter { $0.contains(#""status":500"#) }
        #expect(serverErrors.isEmpty, "\(serverErrors.prefix(3))")
        #expect(host.stdoutLines.contains { $0.contains("Executed 'Functions.CreateLead'") }, "schemathesis exercised the API")
    }
}

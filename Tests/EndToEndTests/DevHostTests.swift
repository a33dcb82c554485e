import Foundation
import TestSupport
import Testing

/// docs/identity.md with the real binary: `fnhost start` in development serves the development host,
/// and `fnhost token` mints tokens it accepts, from the same project folder.
@Suite(.serialized) struct DevHostTests {
    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32?, String, String) {
        let process = try FnhostProcess.start(arguments: arguments, environment: environment)
        let status = await process.waitForExit()
        return (status, process.stdoutText, process.stderrText)
    }

    static func tokenHeader(_ token: String) throws -> [String: Any] {
        var part = String(token.split(separator: ".").first ?? "").replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while part.count % 4 != 0 { part += "=" }
        let data = try #require(Data(base64Encoded: part))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func tokenMintedFromTheProjectWorksAgainstTheRunningEmulator() async throws {
        let root = try ScriptRoot.repository()
        let emulator = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root])
        defer { emulator.terminate() }
        let port = try await emulator.waitForPort()
        let base = "http://127.0.0.1:\(port)"

        let (status, stdout, _) = try await Self.run([
            "token", "--tenant", "t-acme", "--user", "u-42", "--perm", "LEADS_READ", "--perm", "LEADS_WRITE", "--mfa",
            "--script-root", root,
        ])
        #expect(status == 0)
        let token = try #require(stdout.split(separator: "\n").last.map(String.init))
        let kid = try #require(Self.tokenHeader(token)["kid"] as? String)
        #expect(try Self.tokenHeader(token)["alg"] as? String == "RS256")

        let (jwksStatus, jwks, jwksHeaders) = try await HTTP.get(base + "/.dev-host/jwks.json")
        #expect(jwksStatus == 200)
        #expect(jwks.contains(#""kid":"\#(kid)""#))
        #expect(jwksHeaders["Cache-Control"] == "max-age=60")

        let (rbacStatus, rbac, _) = try await HTTP.get(base + "/.dev-host/rbac/effective?tenant_id=t-acme&user_id=u-42")
        #expect(rbacStatus == 200)
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(rbac.utf8)) as? [String: Any])
        #expect(answer["permissions"] as? [String] == ["LEADS_READ", "LEADS_WRITE"])
        #expect((answer["assurance"] as? [String: Any])?["mfa"] as? Bool == true)

        let email = #"{"tenant_id":"t-acme","template":"welcome","to":"a@b.example","vars":{},"idempotency_key":"k-1"}"#
        let (firstStatus, first, _) = try await HTTP.post(base + "/.dev-host/email/send", body: email, headers: ["Content-Type": "application/json"])
        let (_, second, _) = try await HTTP.post(base + "/.dev-host/email/send", body: email, headers: ["Content-Type": "application/json"])
        #expect(firstStatus == 200)
        #expect(first == second, "same idempotency key, same message id")

        #expect(try await Self.run(["dev-host", "rbac-fail", "--script-root", root]).0 == 0)
        #expect(try await HTTP.get(base + "/.dev-host/rbac/effective?tenant_id=t-acme&user_id=u-42").0 == 503)
        #expect(try await Self.run(["dev-host", "rbac-restore", "--script-root", root]).0 == 0)
        #expect(try await HTTP.get(base + "/.dev-host/rbac/effective?tenant_id=t-acme&user_id=u-42").0 == 200)

        #expect(try await Self.run(["dev-host", "rotate-key", "--script-root", root]).0 == 0)
        let (_, rotated, _) = try await Self.run(["token", "--tenant", "t-acme", "--user", "u-42", "--script-root", root])
        let rotatedToken = try #require(rotated.split(separator: "\n").last.map(String.init))
        let newKid = try #require(try Self.tokenHeader(rotatedToken)["kid"] as? String)
        #expect(newKid != kid)
        let (_, both, _) = try await HTTP.get(base + "/.dev-host/jwks.json")
        #expect(both.contains(kid) && both.contains(newKid), "the previous key stays published")
        #expect(FileManager.default.fileExists(atPath: root + "/.fnhost/dev-host/directory.json"))
    }

    @Test func developmentHostIsRefusedOutsideDevelopment() async throws {
        let root = try ScriptRoot.make(manifest: #"{"functions":{}}"#)
        let (status, stdout, stderr) = try await Self.run(
            ["token", "--tenant", "t", "--user", "u", "--script-root", root], environment: ["ENVIRONMENT": "production"])
        #expect(status != 0)
        #expect(stderr.contains("refused outside ENVIRONMENT=development"))
        #expect(!stdout.contains("."))
    }

    @Test func readinessReportsTheSharedCache() async throws {
        let redis = try #require(ProcessInfo.processInfo.environment["FNHOST_TEST_REDIS_URL"], "run through make test")
        let root = try ScriptRoot.repository()
        let healthy = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root], environment: ["REDIS_URL": redis])
        defer { healthy.terminate() }
        let port = try await healthy.waitForPort()
        #expect(try await HTTP.get("http://127.0.0.1:\(port)/health/ready").0 == 200)

        let broken = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root], environment: ["REDIS_URL": "redis://127.0.0.1:1"])
        defer { broken.terminate() }
        let brokenPort = try await broken.waitForPort()
        let (status, body, _) = try await HTTP.get("http://127.0.0.1:\(brokenPort)/health/ready")
        #expect(status == 503)
        #expect(body.contains("not ready: cache"))
        #expect(try await HTTP.get("http://127.0.0.1:\(brokenPort)/health").0 == 200, "liveness does not depend on Redis")
    }
}

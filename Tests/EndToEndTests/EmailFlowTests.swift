import Foundation
import TestSupport
import Testing

/// The outbox as an operator sees it: the host is down while emails are requested, `fnhost` is
/// restarted, the host comes back — every email is delivered exactly once (the development
/// host's `sent-emails.jsonl` is the host-side count), with the message id a replay answers.
/// On the embedded SQLite file of its own script root: every module host's dispatcher serves all
/// tenants of its database, so sharing the test Postgres with concurrently running module hosts
/// would let them deliver these rows to their own stand-in hosts. (The Postgres outbox is covered
/// by `EmailTests` on a scratch database: outage, delivery once, two concurrent dispatchers.)
@Suite(.serialized) struct EmailFlowTests {
    @Test func queuedEmailsSurviveARestartAndAreDeliveredOnce() async throws {
        let root = try ScriptRoot.repository()
        let environment = [
            "EMAIL_DISPATCH_SCHEDULE": "*/1 * * * * *", "EMAIL_RETRY_BASE_SECONDS": "0.5",
            "EMAIL_RETRY_MAX_SECONDS": "1",
        ]
        let tenant = "t-mail-\(UUID().uuidString.prefix(6))"
        let token = try await LeadsFlowTests.token(root, tenant: tenant, user: "u-1", ["--perm", "EMAIL_SEND"])
        #expect(try await DevHostTests.run(["dev-host", "email-fail", "--script-root", root]).0 == 0)

        let first = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root], environment: environment)
        let base = "http://127.0.0.1:\(try await first.waitForPort())"
        var keys: [String] = []
        for index in 1...3 {
            let (status, body, _) = try await HTTP.send(
                base + "/api/emails", method: "POST", body: #"{"template":"welcome","to":"user\#(index)@a.example","vars":{"i":\#(index)}}"#,
                headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json", "Idempotency-Key": "signup-\(index)"])
            #expect(status == 202)
            let answer = LeadsFlowTests.json(body)
            #expect(answer["status"] as? String == "queued", "\(body)")
            keys.append(try #require(answer["idempotency_key"] as? String))
        }
        first.terminate()
        #expect(await first.waitForExit() != nil)

        #expect(try await DevHostTests.run(["dev-host", "email-restore", "--script-root", root]).0 == 0)
        let second = try FnhostProcess.start(arguments: ["start", "--port", "0", "--script-root", root], environment: environment)
        defer { second.terminate() }
        let secondBase = "http://127.0.0.1:\(try await second.waitForPort())"
        let sentFile = URL(fileURLWithPath: root).appendingPathComponent(".fnhost/dev-host/sent-emails.jsonl")
        func sent() -> [[String: Any]] {
            ((try? String(contentsOf: sentFile, encoding: .utf8)) ?? "").split(separator: "\n").map { LeadsFlowTests.json(String($0)) }
        }
        for _ in 0..<200 where sent().count < 3 { try await Task.sleep(for: .milliseconds(100)) }
        try await Task.sleep(for: .seconds(3))  // later dispatcher runs must not send again
        let lines = sent()
        #expect(lines.count == 3, "\(lines)")
        for key in keys {
            let matching = lines.filter { $0["idempotency_key"] as? String == key }
            #expect(matching.count == 1, "\(key) delivered exactly once")
        }
        // The same Idempotency-Key now answers "sent" with the host's message id, without another send.
        let (_, replay, _) = try await HTTP.send(
            secondBase + "/api/emails", method: "POST", body: #"{"template":"welcome","to":"user1@a.example","vars":{"i":1}}"#,
            headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json", "Idempotency-Key": "signup-1"])
        let answer = LeadsFlowTests.json(replay)
        #expect(answer["status"] as? String == "sent")
        #expect(answer["message_id"] as? String == lines.first { $0["idempotency_key"] as? String == keys[0] }?["message_id"] as? String)
        #expect(sent().count == 3)
    }
}

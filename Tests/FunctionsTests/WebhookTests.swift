import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import Functions

struct WebhookSignatureTests {
    @Test func knownAnswerOfTheSpecification() throws {
        let body = Array(#"{"tenant_id":"t-acme","user_id":"u-42"}"#.utf8)
        let signer = WebhookSignature(secrets: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let signature = WebhookSignature.sign(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: "1614265330", body: body, key: try #require(signer.keys.first))
        #expect("v1," + Data(signature).base64EncodedString() == "v1,hOoFqoymM/xYsegUBgse1S8T+1RYYMAkA74QUCZ23q4=")
        try signer.verify(
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: "1614265330", signatures: "v1,hOoFqoymM/xYsegUBgse1S8T+1RYYMAkA74QUCZ23q4=",
            body: body, now: 1_614_265_330)
    }

    @Test func rejections() {
        let body = Array(#"{"tenant_id":"t-acme"}"#.utf8)
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let verifier = WebhookSignature(secrets: "whsec_b3RoZXI= " + secret)  // rotation: two secrets
        let key = WebhookSignature(secrets: secret).keys[0]
        let good = "v1," + Data(WebhookSignature.sign(id: "m1", timestamp: "1000", body: body, key: key)).base64EncodedString()
        #expect(throws: Never.self) { try verifier.verify(id: "m1", timestamp: "1000", signatures: "v1,AAAA " + good, body: body, now: 1000) }
        #expect(throws: WebhookSignature.Rejection.stale) { try verifier.verify(id: "m1", timestamp: "1000", signatures: good, body: body, now: 1301) }
        #expect(throws: WebhookSignature.Rejection.stale) { try verifier.verify(id: "m1", timestamp: "1000", signatures: good, body: body, now: 699) }
        #expect(throws: Never.self) { try verifier.verify(id: "m1", timestamp: "1000", signatures: good, body: body, now: 1300) }
        #expect(throws: WebhookSignature.Rejection.mismatch) { try verifier.verify(id: "m2", timestamp: "1000", signatures: good, body: body, now: 1000) }
        #expect(throws: WebhookSignature.Rejection.mismatch) { try verifier.verify(id: "m1", timestamp: "1000", signatures: good, body: body + [0x20], now: 1000) }
        #expect(throws: WebhookSignature.Rejection.mismatch) { try verifier.verify(id: "m1", timestamp: "1000", signatures: good.replacingOccurrences(of: "v1,", with: "v2,"), body: body, now: 1000) }
        #expect(throws: WebhookSignature.Rejection.missingHeader) { try verifier.verify(id: nil, timestamp: "1000", signatures: good, body: body, now: 1000) }
        #expect(throws: WebhookSignature.Rejection.missingHeader) { try verifier.verify(id: "m1", timestamp: nil, signatures: good, body: body, now: 1000) }
        #expect(throws: WebhookSignature.Rejection.missingHeader) { try verifier.verify(id: "m1", timestamp: "1000", signatures: nil, body: body, now: 1000) }
        #expect(throws: WebhookSignature.Rejection.badTimestamp) { try verifier.verify(id: "m1", timestamp: "-5", signatures: good, body: body, now: 1000) }
        #expect(throws: WebhookSignature.Rejection.noSecret) { try WebhookSignature(secrets: "not-a-whsec").verify(id: "m1", timestamp: "1000", signatures: good, body: body, now: 1000) }
    }
}

/// The webhook through the real module against real Redis: what is purged, and what is not.
@Suite(.serialized) struct WebhookPurgeTests {
    static let current = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    static let previous = "whsec_cHJldmlvdXMtc2VjcmV0LWtleS0xMjM0"

    static func signed(
        _ body: String, secret: String = current, id: String = "msg_\(UUID().uuidString)", timestamp: Int64 = Int64(Date().timeIntervalSince1970)
    ) -> HTTPFields {
        let key = WebhookSignature(secrets: secret).keys[0]
        let signature = Data(WebhookSignature.sign(id: id, timestamp: String(timestamp), body: Array(body.utf8), key: key)).base64EncodedString()
        return [
            PurgeRBACCache.webhookID: id, PurgeRBACCache.webhookTimestamp: String(timestamp),
            PurgeRBACCache.webhookSignature: "v1,\(signature)", .contentType: "application/json",
        ]
    }

    @Test func signedWebhooksPurgeAndEverythingElseChangesNothing() async throws {
        let database = try Backend.sqlite.databaseURL()
        let redis = RedisCache(client: try TestRedis.client())
        let tenant = "wh-\(UUID().uuidString.prefix(8))"
        let otherTenant = tenant + "-other"
        @Sendable func seed() async throws {
            for key in ["rbac:\(tenant):u-1", "rbac:\(tenant):u-2", "rbac:\(otherTenant):u-1"] { try await redis.set(key, [1], ttl: .seconds(60)) }
        }
        @Sendable func present() async throws -> [Bool] {
            var result: [Bool] = []
            for key in ["rbac:\(tenant):u-1", "rbac:\(tenant):u-2", "rbac:\(otherTenant):u-1"] { result.append(try await redis.get(key) != nil) }
            return result
        }
        try await LeadsHarness.run(
            databaseURL: database, extra: ["REDIS_URL": try TestRedis.url(), "WEBHOOK_HMAC_SECRET": "\(Self.previous) \(Self.current)"]
        ) { _, _, client in
            func post(_ body: String, _ headers: HTTPFields) async throws -> Reply {
                try await client.execute(uri: "/webhooks/rbac-changed", method: .post, headers: headers, body: ByteBuffer(string: body)) {
                    Reply(status: $0.status, headers: $0.headers, body: String(buffer: $0.body))
                }
            }
            let user = #"{"type":"rbac.changed","tenant_id":"\#(tenant)","user_id":"u-1"}"#
            let now = Int64(Date().timeIntervalSince1970)
            try await seed()
            // Each failure: 401 INVALID_SIGNATURE (400 for a bad body) and nothing purged.
            let failures: [(String, String, HTTPFields, String)] = [
                ("wrong secret", user, Self.signed(user, secret: "whsec_d3Jvbmctc2VjcmV0LXZhbHVlLTEyMzQ1Ng=="), "INVALID_SIGNATURE"),
                ("tampered body", user.replacingOccurrences(of: "u-1", with: "u-2"), Self.signed(user), "INVALID_SIGNATURE"),
                ("stale timestamp", user, Self.signed(user, timestamp: now - 301), "INVALID_SIGNATURE"),
                ("future timestamp", user, Self.signed(user, timestamp: now + 330), "INVALID_SIGNATURE"),  // slack for a slow machine
                ("missing signature", user, { var h = Self.signed(user); h[PurgeRBACCache.webhookSignature] = nil; return h }(), "INVALID_SIGNATURE"),
                ("missing id", user, { var h = Self.signed(user); h[PurgeRBACCache.webhookID] = nil; return h }(), "INVALID_SIGNATURE"),
                ("missing timestamp", user, { var h = Self.signed(user); h[PurgeRBACCache.webhookTimestamp] = nil; return h }(), "INVALID_SIGNATURE"),
                ("not JSON", "tenant=x", Self.signed("tenant=x"), "VALIDATION_FAILED"),
                ("no tenant", #"{"user_id":"u-1"}"#, Self.signed(#"{"user_id":"u-1"}"#), "VALIDATION_FAILED"),
                ("newline in id", #"{"type":"rbac.changed","tenant_id":"a\nb"}"#, Self.signed(#"{"type":"rbac.changed","tenant_id":"a\nb"}"#), "VALIDATION_FAILED"),
            ]
            for (name, body, headers, code) in failures {
                let reply = try await post(body, headers)
                #expect(reply.code == code, "\(name): \(reply.status) \(reply.body)")
                #expect(reply.status == (code == "INVALID_SIGNATURE" ? .unauthorized : .badRequest), "\(name)")
                #expect(try await present() == [true, true, true], "\(name) purged nothing")
            }
            // Valid, signed with the rotated (current) secret while the previous is still configured: the user's entry only.
            let id = "msg_\(UUID().uuidString)"
            #expect(try await post(user, Self.signed(user, id: id)).status == .noContent)
            #expect(try await present() == [false, true, true])
            // The previous secret still verifies (rotation window).
            let other = #"{"type":"rbac.changed","tenant_id":"\#(tenant)","user_id":"u-2"}"#
            #expect(try await post(other, Self.signed(other, secret: Self.previous)).status == .noContent)
            #expect(try await present() == [false, false, true])
            // A replayed webhook-id: 204, no second purge.
            try await seed()
            #expect(try await post(user, Self.signed(user, id: id)).status == .noContent)
            #expect(try await present() == [true, true, true], "replay within 10 minutes purges nothing")
            // The whole tenant (no user_id), never the other tenant.
            let whole = #"{"type":"rbac.changed","tenant_id":"\#(tenant)"}"#
            #expect(try await post(whole, Self.signed(whole)).status == .noContent)
            #expect(try await present() == [false, false, true])
        }
        try await withAuditStore(database) { store in
            let events = try await chain(store, tenant).filter { $0.eventType == "RBAC_CACHE_PURGED" }
            #expect(events.count == 3, "one event per purge, none for the replay or the failures")
            #expect(events.last?.details.jsonValue["user_id"] == .null)
        }
    }
}

import Foundation
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import TestSupport

@testable import Functions

/// The parties of docs/security.md's threat model, each tried against real module instances sharing a real
/// PostgreSQL and a Redis of the test's own (so it can be flushed): what they can do must change nothing a client
/// can observe. The captured-delivery party is in `SessionRevocationTests.aDeliveryIsBoundToItsEndpoint`, the
/// tenant user's look-alike identifiers in `IdentifiersOnBytesTests`, the runtime-role holder in `SecondWallTests`.
@Suite(.serialized) struct RedisWriterTests {
    /// A deployment: the stand-in identity host, a migrated PostgreSQL database and an own Redis; `test` starts module
    /// instances on them with `instance { client in … }` (each a fresh process-like host: empty memory).
    static func deployment(
        _ test: @escaping @Sendable (StandInHost, TestKey, OwnRedis, Instances) async throws -> Void
    ) async throws {
        let database = try Backend.postgres.databaseURL()
        _ = try await StoreSetup.migrate(databaseURL: database, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        let redis = try OwnRedis()
        try await redis.start()
        let key = try TestKey.make(kid: "k1")
        let host = StandInHost()
        await host.state.set(keys: [key])
        do {
            try await host.application().test(.live) { hostClient in
                let settings = IdentityHarness.hostSettings(
                    hostClient.port ?? 0,
                    extra: ["DATABASE_URL": database, "REDIS_URL": redis.url(), "WEBHOOK_HMAC_SECRET": WebhookPurgeTests.current])
                try await test(host, key, redis, Instances(settings: settings, root: try LeadsHarness.scriptRoot().path))
            }
        } catch {
            await redis.stop()
            throw error
        }
        await redis.stop()
    }

    struct Instances: Sendable {
        let settings: [String: String]
        let root: String

        func callAsFunction(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
            let host = try await FunctionHost.build(
                options: .init(scriptRoot: root, port: 0), module: FunctionHostModule(), environment: settings,
                logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
            try await host.application().test(.live) { client in try await body(client) }
        }
    }

    static func webhook(_ client: any TestClientProtocol, _ path: String, _ body: String) async throws -> HTTPResponse.Status {
        try await client.execute(
            uri: path, method: .post, headers: WebhookPurgeTests.signed(body), body: ByteBuffer(string: body)
        ) { $0.status }
    }

    static func raw(_ redis: OwnRedis, _ arguments: [[UInt8]]) async throws -> RedisValue {
        let client = RedisClient(endpoint: try RedisEndpoint(url: redis.url()))
        return try await client.command(arguments)
    }

    /// Finding 1: revocations lived only in Redis; a flush (or eviction, or a failover without persistence) and a
    /// restart brought a revoked session back. Now the database is the record: the running instance and one
    /// started after the flush both refuse the token.
    @Test func aRevocationSurvivesAFlushedRedis() async throws {
        try await Self.deployment { host, key, redis, instance in
            let tenant = "hp-rv-\(UUID().uuidString.prefix(8))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u-1", ["LEADS_READ"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u-1")
            try await instance { a in
                #expect(try await a.send(.get, "/api/leads?limit=1", token: token).status == .ok)
                let body = #"{"type":"sessions.revoked","tenant_id":"\#(tenant)","user_id":"u-1"}"#
                #expect(try await Self.webhook(a, "/webhooks/sessions-revoked", body) == .noContent)
                #expect(try await a.send(.get, "/api/leads?limit=1", token: token).status == .unauthorized)
                _ = try await Self.raw(redis, [Array("FLUSHALL".utf8)])
                try await Task.sleep(for: .milliseconds(1200))  // past a poll of the database
                #expect(try await a.send(.get, "/api/leads?limit=1", token: token).status == .unauthorized, "after the flush")
            }
            try await instance { c in
                let answer = try await c.send(.get, "/api/leads?limit=1", token: token)
                #expect(answer.status == .unauthorized, "an instance started after the flush: \(answer.body)")
            }
        }
    }

    /// Finding 6: the seal binds key and value, not freshness. An RBAC entry DUMPed before a purge and RESTOREd after
    /// it granted the permission again until its TTL. Now an answer asked for before the latest purge covering it
    /// is never used, on a running instance (that held the entry before the purge) and on one started afterwards.
    @Test func aPurgeCannotBeUndoneFromRedis() async throws {
        try await Self.deployment { host, key, redis, instance in
            let tenant = "hp-pg-\(UUID().uuidString.prefix(8))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u-1", ["LEADS_READ"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u-1")
            let entryKey = Array(RBACService.key(tenant: tenant.tenant, user: "u-1".user).utf8)
            try await instance { a in
                try await instance { b in
                    #expect(try await a.send(.get, "/api/leads?limit=1", token: token).status == .ok)
                    #expect(try await b.send(.get, "/api/leads?limit=1", token: token).status == .ok, "b holds the answer too")
                    let dumped = try #require(try await Self.raw(redis, [Array("DUMP".utf8), entryKey]).bytes, "the sealed entry")
                    // The host takes the permission away and says so; the purge is answered once recorded.
                    await host.state.set(answer: RBACAnswer(tenantID: tenant, userID: "u-1", permissions: [], ttlSeconds: 300))
                    let purge = #"{"type":"rbac.changed","tenant_id":"\#(tenant)","user_id":"u-1"}"#
                    #expect(try await Self.webhook(a, "/webhooks/rbac-changed", purge) == .noContent)
                    #expect(try await a.send(.get, "/api/leads?limit=1", token: token).status == .forbidden)
                    // The Redis writer puts the pre-purge entry back.
                    let restored = try await Self.raw(redis, [Array("RESTORE".utf8), entryKey, Array("0".utf8), dumped, Array("REPLACE".utf8)])
                    #expect(restored == .status("OK"))
                    try await Task.sleep(for: .milliseconds(1200))  // b has heard of the purge (pub/sub or the database)
                    let onB = try await b.send(.get, "/api/leads?limit=1", token: token)
                    #expect(onB.status == .forbidden, "a running instance ignores the restored entry: \(onB.body)")
                    // Put back again (b's refetch replaced it); an instance started after the purge ignores it too.
                    _ = try await Self.raw(redis, [Array("RESTORE".utf8), entryKey, Array("0".utf8), dumped, Array("REPLACE".utf8)])
                    try await instance { c in
                        let answer = try await c.send(.get, "/api/leads?limit=1", token: token)
                        #expect(answer.status == .forbidden, "an instance started after the purge: \(answer.body)")
                    }
                }
            }
        }
    }
}

import Foundation
import TestSupport
import Logging
import PostgresNIO
import Testing

@testable import Functions

/// `sslmode=verify-full` against the test PostgreSQL (ssl=on, a CA and server certificate generated
/// by scripts/with-services.sh): the chain and the host name are verified against `sslrootcert` or
/// `TLS_CA_FILE`; an unrelated CA is refused.
@Suite struct PostgresTLSTests {
    static func url(_ parameters: String) throws -> String {
        let base = try Backend.postgres.databaseURL().replacingOccurrences(of: "?sslmode=disable", with: "")
        return base + "?" + parameters
    }

    struct NoConnection: Error {}

    /// One query through a pool, bounded: a pool retries a refused handshake forever, so no answer
    /// within `within` counts as "did not connect".
    static func connects(_ configuration: PostgresClient.Configuration, within: Duration = .seconds(20)) async -> Result<Int, any Error> {
        let client = PostgresClient(configuration: configuration, backgroundLogger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        return await withTaskGroup(of: Result<Int, any Error>?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            group.addTask {
                do {
                    let rows = try await client.query("SELECT 1", logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
                    var value = 0
                    for try await one in rows.decode(Int.self) { value = one }
                    return .success(value)
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: within)
                return .failure(NoConnection())
            }
            var outcome: Result<Int, any Error> = .failure(CancellationError())
            for await result in group {
                if let result {
                    outcome = result
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }

    @Test func verifyFullChecksTheChainAndTheName() async throws {
        let ca = try #require(ProcessInfo.processInfo.environment["FNHOST_TEST_PG_CA"], "run through make test")
        let other = try #require(ProcessInfo.processInfo.environment["FNHOST_TEST_PG_OTHER_CA"])
        var configuration = try PostgresURL.configuration(try Self.url("sslmode=verify-full&sslrootcert=\(ca)"))
        configuration.options.connectTimeout = .seconds(5)
        #expect((try? await Self.connects(configuration).get()) == 1, "the generated CA, name 127.0.0.1 in the certificate")
        // TLS_CA_FILE when the URL names no root.
        let viaSetting = try PostgresURL.configuration(try Self.url("sslmode=verify-full"), caFile: ca)
        #expect((try? await Self.connects(viaSetting).get()) == 1)
        // An unrelated CA: refused, for verify-ca and verify-full.
        for mode in ["verify-full", "verify-ca"] {
            var refused = try PostgresURL.configuration(try Self.url("sslmode=\(mode)&sslrootcert=\(other)"))
            refused.options.connectTimeout = .seconds(5)
            if case .success = await Self.connects(refused, within: .seconds(4)) { Issue.record("\(mode) accepted a certificate from another CA") }
        }
        #expect(throws: StoreUnavailable.self) { try PostgresURL.configuration(try Self.url("sslmode=verify-full&sslrootcert=/nonexistent.pem")) }
    }
}

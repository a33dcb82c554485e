import Foundation
import FunctionRuntime
import TestSupport
import Testing

@testable import Functions

/// docs/settings.md against the declarations (`HostSettings`, `ModuleSettingSpecs`), both ways:
/// every declared setting has its row, with its default and its secret mark, and every row is declared.
@Suite struct SettingsTableTests {
    struct Row {
        let name: String
        let secret: Bool
        let defaultText: String
    }

    static func rows() throws -> [Row] {
        let text = try String(contentsOf: Repository.file("docs/settings.md"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> Row? in
            guard line.hasPrefix("| `") else { return nil }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 4, let name = cells[1].split(separator: "`").first else { return nil }
            return Row(name: String(name), secret: cells[1].contains("(secret)"), defaultText: cells[2])
        }
    }

    static let declared = HostSettings.all + ModuleSettingSpecs.all

    @Test func everyDeclaredSettingIsDocumentedWithItsDefault() throws {
        let rows = Dictionary(try Self.rows().map { ($0.name, $0) }) { first, _ in first }
        #expect(Set(Self.declared.map(\.name)).count == Self.declared.count, "a setting declared twice")
        for spec in Self.declared {
            guard let row = rows[spec.name] else {
                Issue.record("\(spec.name) has no row in docs/settings.md")
                continue
            }
            #expect(row.secret == spec.secret, "\(spec.name): secret mark")
            if let value = spec.defaultValue {
                #expect(row.defaultText == "`\(value)`", "\(spec.name): docs say \(row.defaultText), code says \(value)")
            }
        }
    }

    @Test func everyDocumentedSettingIsDeclared() throws {
        let names = Set(Self.declared.map(\.name))
        for row in try Self.rows() {
            #expect(names.contains(row.name), "docs/settings.md documents \(row.name), which no declaration has")
        }
    }

    /// Defaults parse under their own kind and range (a default out of range would stop every start).
    @Test func defaultsAreValidUnderTheirOwnRules() throws {
        let empty = Settings()
        for spec in Self.declared where spec.defaultValue != nil {
            switch spec.kind {
            case .text: #expect(spec.text(empty) == spec.defaultValue)
            case .number: #expect(throws: Never.self, "\(spec.name)") { _ = try spec.number(empty) }
            case .seconds: #expect(throws: Never.self, "\(spec.name)") { _ = try spec.seconds(empty) }
            }
        }
        // Out of range, not a number, blank: clear errors naming the setting, or the default.
        let burst = ModuleSettingSpecs.rateBurst
        #expect(throws: SettingsError.self) { _ = try burst.number(Settings([burst.name: "0"])) }
        #expect(throws: SettingsError.self) { _ = try burst.number(Settings([burst.name: "nan"])) }
        #expect(try burst.number(Settings([burst.name: "  "])) == 100)
        let ttl = ModuleSettingSpecs.rbacCacheTTL
        do {
            _ = try ttl.seconds(Settings([ttl.name: "99999999999999999999"]))
            Issue.record("an overlong figure must be refused")
        } catch {
            #expect(error.description == "RBAC_CACHE_TTL_SECONDS must be a whole number of seconds from 0 to 86400")
        }
        #expect(throws: ModuleConfigurationError.self) { _ = try ModuleSettings(Settings(["RATE_LIMIT_PER_SECOND": "-1"])) }
        let parsed = try ModuleSettings(Settings(["RATE_LIMIT_BURST": "7", "STAGING_PLATFORM_ADMIN_EMAILS": "a@x.example,b@x.example"]))
        #expect(parsed.rateLimit.burst == 7 && parsed.rateLimit.perSecond == 50)
        #expect(parsed.stagingAdminEmails == ["a@x.example", "b@x.example"])
        #expect(parsed.emailRetry == RetryPolicy(base: 2, cap: 300, horizon: 21_600))
    }
}

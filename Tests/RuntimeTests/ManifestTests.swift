import Foundation
import TestSupport
import HTTPTypes
import Testing

@testable import FunctionRuntime

private func manifest(_ functions: String) throws -> FunctionManifest {
    try FunctionManifest.parse(Data(#"{"functions":{\#(functions)}}"#.utf8))
}

private let httpOut = #"{"type":"http","direction":"out","name":"res"}"#

private func httpEntry(_ name: String, route: String, methods: String = #"["get"]"#) -> String {
    #""\#(name)":{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":\#(methods),"route":"\#(route)"},\#(httpOut)]}"#
}

private func timerEntry(_ name: String, schedule: String) -> String {
    #""\#(name)":{"bindings":[{"type":"timerTrigger","direction":"in","name":"timer","schedule":"\#(schedule)"}]}"#
}

private func registry(http: [String] = [], timers: [String] = []) -> FunctionRegistry {
    var registry = FunctionRegistry()
    for name in http { registry.register(name, http: { _ in .noContent() }) }
    for name in timers { registry.register(name, timer: { _, _ in }) }
    return registry
}

private func catalogError(_ functions: String, http: [String] = [], timers: [String] = [], settings: Settings = Settings())
    -> ManifestError?
{
    do {
        let specs = try manifest(functions).specs(settings: settings, reservedRoutePrefixes: ["admin", "runtime", "metrics"])
        _ = try FunctionCatalog(specs: specs, registry: registry(http: http, timers: timers))
        return nil
    } catch let error as ManifestError {
        return error
    } catch {
        return ManifestError(function: nil, reason: "unexpected \(error)")
    }
}

@Suite struct ManifestValidationTests {
    @Test func validManifestLoads() throws {
        let specs = try manifest([httpEntry("GetLead", route: "api/leads/{id}"), timerEntry("Tick", schedule: "%TICK%")]
            .joined(separator: ","))
            .specs(settings: Settings(["TICK": "*/5 * * * * *"]))
        let catalog = try FunctionCatalog(specs: specs, registry: registry(http: ["GetLead"], timers: ["Tick"]))
        #expect(catalog.functions.map(\.name) == ["GetLead", "Tick"])
        #expect(catalog.function(named: "tick")?.spec.timerTrigger?.schedule.expression == "*/5 * * * * *")
        // The document keeps the placeholder as written, for `fnhost package`.
        #expect(catalog.function(named: "Tick")?.spec.document["bindings"]?.arrayValue?.first?["schedule"] == .string("%TICK%"))
    }

    @Test func missingHandlerNamesTheFunction() {
        let error = catalogError(httpEntry("ListLeads", route: "api/leads"))
        #expect(error?.function == "ListLeads")
        #expect(error?.reason.contains("no handler") == true)
    }

    @Test func handlerWithoutEntryNamesTheFunction() {
        let error = catalogError(httpEntry("Health", route: "health"), http: ["Health", "Orphan"])
        #expect(error?.function == "Orphan")
        #expect(error?.reason.contains("no entry in function.json") == true)
    }

    @Test func handlerOfTheWrongKind() {
        let error = catalogError(timerEntry("Tick", schedule: "0 * * * * *"), http: ["Tick"])
        #expect(error?.function == "Tick")
        #expect(error?.reason.contains("timerTrigger binding but its handler is a HTTP handler") == true)
    }

    @Test func twiceRegisteredHandler() {
        var registry = FunctionRegistry()
        registry.register("Health", http: { _ in .noContent() })
        registry.register("health", http: { _ in .noContent() })
        #expect(throws: ManifestError.self) {
            let specs = try manifest(httpEntry("Health", route: "health")).specs(settings: Settings())
            _ = try FunctionCatalog(specs: specs, registry: registry)
        }
    }

    @Test(arguments: ["api/{", "api/{id", "api/x{id}", "api/{1id}", "api/{id:weird}", "api/{*rest}/x", "api//x", "api/{id}/{ID}", "api/a b"])
    func unparseableRoute(_ route: String) {
        let error = catalogError(httpEntry("F", route: route), http: ["F"])
        #expect(error?.function == "F")
        #expect(error?.reason.contains("does not parse") == true, "\(String(describing: error))")
    }

    @Test func unparseableSchedule() {
        let error = catalogError(timerEntry("Tick", schedule: "0 0 25 * * *"), timers: ["Tick"])
        #expect(error?.function == "Tick")
        #expect(error?.reason.contains("schedule '0 0 25 * * *' does not parse") == true)
    }

    @Test func scheduleThatNeverFires() {
        let error = catalogError(timerEntry("Tick", schedule: "0 0 0 31 2 *"), timers: ["Tick"])
        #expect(error?.reason.contains("never fires") == true)
    }

    @Test func routeClashOnSameMethod() {
        let error = catalogError(
            [httpEntry("A", route: "api/leads/{id}"), httpEntry("B", route: "API/leads/{leadId}")].joined(separator: ","),
            http: ["A", "B"])
        #expect(error?.function == "B")
        #expect(error?.reason.contains("clashes with function 'A'") == true)
    }

    @Test func sameRouteOnDifferentMethodsIsFine() {
        let error = catalogError(
            [httpEntry("A", route: "api/leads/{id}"), httpEntry("B", route: "api/leads/{id}", methods: #"["patch"]"#)]
                .joined(separator: ","),
            http: ["A", "B"])
        #expect(error == nil)
    }

    @Test func routeWithoutMethodsClashesWithAny() {
        let error = catalogError(
            [httpEntry("A", route: "x", methods: "null"), httpEntry("B", route: "x", methods: #"["delete"]"#)]
                .joined(separator: ","),
            http: ["A", "B"])
        #expect(error?.function == "B")
    }

    @Test func unknownBindingType() {
        let error = catalogError(
            #""Q":{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"q"}]}"#, timers: ["Q"])
        #expect(error?.function == "Q")
        #expect(error?.reason.contains("binding type 'queueTrigger' is not supported") == true)
    }

    @Test func unsetSettingPlaceholder() {
        let error = catalogError(timerEntry("Verify", schedule: "%AUDIT_VERIFY_SCHEDULE%"), timers: ["Verify"])
        #expect(error?.function == "Verify")
        #expect(error?.reason.contains("AUDIT_VERIFY_SCHEDULE") == true)
        #expect(error?.reason.contains("not set") == true)
    }

    @Test func reservedRoutePrefix() {
        let error = catalogError(httpEntry("Sneaky", route: "admin/functions/x"), http: ["Sneaky"])
        #expect(error?.reason.contains("reserved") == true)
    }

    @Test func triggerCountAndOutputRules() {
        #expect(
            catalogError(#""F":{"bindings":[\#(httpOut)]}"#, http: ["F"])?.reason.contains("exactly one trigger") == true)
        #expect(
            catalogError(
                #""F":{"bindings":[{"type":"httpTrigger","direction":"in","name":"req"}]}"#, http: ["F"])?
                .reason.contains("exactly one \"http\" output") == true)
        #expect(
            catalogError(
                #""F":{"bindings":[{"type":"httpTrigger","direction":"out","name":"req"},\#(httpOut)]}"#, http: ["F"])?
                .reason.contains("direction") == true)
        #expect(catalogError(#""F":{"bindings":[]}"#, http: ["F"])?.reason.contains("non-empty") == true)
        #expect(catalogError(httpEntry("F", route: "x", methods: #"["fetch"]"#), http: ["F"])?.reason.contains("not an HTTP method") == true)
    }

    @Test func invalidDocuments() {
        #expect(throws: ManifestError.self) { try FunctionManifest.parse(Data("{".utf8)) }
        #expect(throws: ManifestError.self) { try FunctionManifest.parse(Data(#"{"functions":[]}"#.utf8)) }
        #expect(throws: ManifestError.self) {
            try FunctionManifest.parse(Data(#"{"functions":{"A":{"bindings":[]},"a":{"bindings":[]}}}"#.utf8))
        }
        #expect(catalogError(httpEntry("host", route: "x"), http: ["host"])?.reason.contains("name") == true)
    }

    @Test func errorDescriptionIsOneLineNamingTheFunction() {
        let error = ManifestError(function: "ListLeads", reason: "is in function.json but no handler is registered for it")
        #expect(error.description == "function 'ListLeads': is in function.json but no handler is registered for it")
        #expect(!error.description.contains("\n"))
    }
}

@Suite struct RouterTests {
    private func catalog(_ entries: [String], http: [String]) throws -> FunctionCatalog {
        let specs = try manifest(entries.joined(separator: ",")).specs(settings: Settings())
        return try FunctionCatalog(specs: specs, registry: registry(http: http))
    }

    @Test func matchesParametersConstraintsAndPrecedence() throws {
        let catalog = try catalog(
            [
                httpEntry("GetLead", route: "api/leads/{id}"),
                httpEntry("Latest", route: "api/leads/latest"),
                httpEntry("ByNumber", route: "api/items/{n:int}"),
                httpEntry("ByName", route: "api/items/{name}"),
                httpEntry("Files", route: "files/{*path}"),
                httpEntry("Update", route: "api/leads/{id}", methods: #"["patch","delete"]"#),
            ],
            http: ["GetLead", "Latest", "ByNumber", "ByName", "Files", "Update"])
        func resolve(_ method: HTTPRequest.Method, _ path: String) -> (String, [String: String])? {
            if case .matched(let index, let parameters) = catalog.router.resolve(method: method, path: Substring(path)) {
                return (catalog.functions[index].name, parameters)
            }
            return nil
        }
        #expect(resolve(.get, "/api/leads/42")?.0 == "GetLead")
        #expect(resolve(.get, "/api/leads/42")?.1 == ["id": "42"])
        #expect(resolve(.get, "/API/Leads/latest")?.0 == "Latest")
        // Literals compare on bytes, ASCII letters alone folded: no other byte pair (`@`/`` ` ``, `[`/`{`),
        // no Unicode folding or canonical equivalence, no prefix.
        #expect(RouteTemplate.equalsIgnoringASCIICase("LaTeSt", "latest"))
        #expect(!RouteTemplate.equalsIgnoringASCIICase("@", "`"))
        #expect(!RouteTemplate.equalsIgnoringASCIICase("[", "{"))
        #expect(!RouteTemplate.equalsIgnoringASCIICase("lates", "latest"))
        #expect(!RouteTemplate.equalsIgnoringASCIICase("latestt", "latest"))
        #expect(!RouteTemplate.equalsIgnoringASCIICase("la\u{212A}", "lak"))
        #expect(!RouteTemplate.equalsIgnoringASCIICase("caf\u{E9}", "cafe\u{301}"))
        #expect(resolve(.get, "/api/leads/LATEST\u{301}")?.0 == "GetLead")
        #expect(resolve(.get, "/api/leads/a%20b/")?.1 == ["id": "a b"])
        #expect(resolve(.get, "/api/items/7")?.0 == "ByNumber")
        #expect(resolve(.get, "/api/items/seven")?.0 == "ByName")
        #expect(resolve(.get, "/files/a/b/c.txt")?.1 == ["path": "a/b/c.txt"])
        #expect(resolve(.patch, "/api/leads/9")?.0 == "Update")
        #expect(resolve(.get, "/api/leads") == nil)
        if case .methodNotAllowed(let allowed) = catalog.router.resolve(method: .put, path: "/api/leads/9") {
            #expect(Set(allowed) == [.get, .patch, .delete])
        } else {
            Issue.record("PUT on a known route must be 405")
        }
        if case .notFound = catalog.router.resolve(method: .get, path: "/nothing/here") {} else {
            Issue.record("unknown path must be 404")
        }
    }

    @Test func queryItemsDecode() {
        let query = QueryItems(parsing: "limit=20&cursor=a%2Bb&name=J+Doe&flag&limit=30&bad=%zz")
        #expect(query["limit"] == "20")
        #expect(query.values("limit") == ["20", "30"])
        #expect(query["cursor"] == "a+b")
        #expect(query["name"] == "J Doe")
        #expect(query["flag"] == "")
        #expect(query["bad"] == "%zz")
        #expect(query["missing"] == nil)
    }
}

@Suite struct SettingsTests {
    @Test func localSettingsFileIsReadAndEnvironmentWins() throws {
        let file = try LocalSettingsFile.parse(
            Data(#"{"IsEncrypted":false,"Values":{"A":"file","B":"file","N":5},"Host":{"LocalHttpPort":7080}}"#.utf8))
        #expect(file.localHTTPPort == 7080)
        let settings = Settings.layered(["A": "default", "C": "default"], file.values, ["B": "env"])
        #expect(settings["A"] == "file")
        #expect(settings["B"] == "env")
        #expect(settings["C"] == "default")
        #expect(settings["N"] == "5")
    }

    @Test func encryptedOrMalformedFilesAreRefused() {
        #expect(throws: SettingsError.self) { try LocalSettingsFile.parse(Data(#"{"IsEncrypted":true,"Values":{}}"#.utf8)) }
        #expect(throws: SettingsError.self) { try LocalSettingsFile.parse(Data(#"{"Values":{"A":{"x":1}}}"#.utf8)) }
        #expect(throws: SettingsError.self) { try LocalSettingsFile.parse(Data(#"{"Host":{"LocalHttpPort":70000}}"#.utf8)) }
        #expect(throws: SettingsError.self) { try LocalSettingsFile.parse(Data("not json".utf8)) }
    }

    @Test func placeholders() throws {
        let settings = Settings(["A": "x", "B": "y"])
        #expect(try settings.resolvingPlaceholders(in: "%A%-%B%") == "x-y")
        #expect(try settings.resolvingPlaceholders(in: "100%") == "100%")
        #expect(try settings.resolvingPlaceholders(in: "no placeholders") == "no placeholders")
        #expect(throws: SettingsError.self) { try settings.resolvingPlaceholders(in: "%MISSING%") }
    }

    @Test func environmentAndTimeZone() throws {
        #expect(try Settings().deploymentEnvironment() == .development)
        #expect(try Settings(["ENVIRONMENT": "Production"]).deploymentEnvironment() == .production)
        #expect(throws: SettingsError.self) { try Settings(["ENVIRONMENT": "prod"]).deploymentEnvironment() }
        #expect(try Settings(["WEBSITE_TIME_ZONE": "Europe/Berlin"]).scheduleTimeZone().identifier == "Europe/Berlin")
        #expect(throws: SettingsError.self) { try Settings(["WEBSITE_TIME_ZONE": "Mars/Olympus"]).scheduleTimeZone() }
    }
}

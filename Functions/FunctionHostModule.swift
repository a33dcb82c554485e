import FunctionRuntime

/// The module: registers every function of function.json with the runtime.
public struct FunctionHostModule: FunctionModule {
    public init() {}

    public var settingDefaults: [String: String] {
        [
            "ENVIRONMENT": "development",
            "AUDIT_VERIFY_SCHEDULE": "0 0 2 * * *",
        ]
    }

    public func configure(_ context: inout ModuleContext) async throws {
        context.functions.register("Health", http: Health())
        context.functions.register("HealthReady", http: HealthReady(checks: []))
    }
}

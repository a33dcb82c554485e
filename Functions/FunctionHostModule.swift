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

    /// SPEC §3's secrets; outside development the host does not start without them.
    public var requiredSecrets: [String] {
        ["HOST_JWKS_URI", "HOST_RBAC_API_KEY", "HOST_EMAIL_API_KEY", "WEBHOOK_HMAC_SECRET", "DATABASE_URL", "METRICS_TOKEN"]
    }

    public func configure(_ context: inout ModuleContext) async throws {
        let setup = try await ModuleSetup.make(&context, scriptRoot: context.scriptRoot)
        context.functions.register("Health", http: Health())
        context.functions.register("HealthReady", http: HealthReady(checks: [CacheReadiness(cache: setup.cache)]))
    }
}

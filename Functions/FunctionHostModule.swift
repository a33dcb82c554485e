import FunctionRuntime

/// The module: registers every function of function.json with the runtime.
public struct FunctionHostModule: FunctionModule {
    public init() {}

    public var settingDefaults: [String: String] {
        // The manifest's %PLACEHOLDER% schedules get their declared defaults (ModuleSettingSpecs). ENVIRONMENT is
        // the deployment's: the runtime decides it (development under start, production under serve).
        var defaults: [String: String] = [:]
        for spec in [ModuleSettingSpecs.auditVerifySchedule, ModuleSettingSpecs.emailDispatchSchedule] {
            defaults[spec.name] = spec.defaultValue
        }
        return defaults
    }

    /// `fnhost package` loads the handlers against nothing real.
    public var packagingSettings: [String: String] { ["DATABASE_URL": "sqlite::memory:", "REDIS_URL": ""] }

    /// The secrets of docs/settings.md; outside development the host does not start without them.
    public var requiredSecrets: [String] {
        typealias S = ModuleSettingSpecs
        return [S.jwksURI, S.rbacKey, S.emailKey, S.webhookSecret, S.databaseURL, HostSettings.metricsToken, S.auditSigningKey].map(\.name)
    }

    public func configure(_ context: inout ModuleContext) async throws {
        let setup = try await ModuleSetup.make(&context, scriptRoot: context.scriptRoot)
        context.functions.register("Health", http: Health())
        let gate = setup.schema
        context.functions.register(
            "HealthReady",
            http: HealthReady(checks: [
                DatabaseReadiness(store: setup.store), CacheReadiness(cache: setup.cache), SchemaReadiness(gate: gate),
            ]))
        let security = setup.security
        let store = setup.store
        // Every function that touches the database sits behind the schema gate (docs/data.md).
        func data(_ name: String, _ function: some HTTPFunction) {
            context.functions.register(name, http: gate.guarding(function))
        }
        data("ListLeads", security.guarded(ListLeads(store: store)))
        data("CreateLead", security.guarded(CreateLead(store: store)))
        data("GetLead", security.guarded(GetLead(store: store)))
        data("UpdateLead", security.guarded(UpdateLead(store: store)))
        data("DeleteLead", security.guarded(DeleteLead(store: store)))
        data("ExportLeads", security.guarded(ExportLeads(store: store)))
        data(
            "PurgeRBACCache",
            PurgeRBACCache(secrets: context.secrets, rbac: setup.rbac, cache: setup.cache, audit: setup.audit, metrics: context.metricsFactory))
        data(
            "RevokeSessions",
            RevokeSessions(
                secrets: context.secrets, revocations: setup.revocations, cache: setup.cache, audit: setup.audit,
                metrics: context.metricsFactory))
        data("SendEmail", security.guarded(SendEmail(store: store, outbox: setup.outbox)))
        context.functions.register("EmailOutboxDispatcher", timer: gate.guarding(EmailOutboxDispatcher(store: store, outbox: setup.outbox, metrics: context.metricsFactory)))
        data("ListAuditEvents", security.guarded(ListAuditEvents(store: store)))
        let tree = AuditTree(store: store)
        data("GetAuditCheckpoint", security.guarded(GetAuditCheckpoint(tree: tree, keys: setup.checkpointKeys)))
        data("GetAuditProof", security.guarded(GetAuditProof(tree: tree)))
        data("GetAuditConsistency", security.guarded(GetAuditConsistency(tree: tree)))
        context.functions.register("GetAuditVerifierKey", http: GetAuditVerifierKey(keys: setup.checkpointKeys))
        data("ExportAuditEvents", security.guarded(ExportAuditEvents(store: store)))
        context.functions.register(
            "AuditChainVerifier",
            timer: gate.guarding(
                AuditChainVerifierFunction(
                    verification: AuditVerification(
                        store: store, logger: context.logger, metrics: context.metricsFactory, keys: setup.checkpointKeys))))
        for (name, schema) in LeadsOpenAPI.schemas.merging(AuditOpenAPI.schemas, uniquingKeysWith: { $1 })
            .merging(WebhookOpenAPI.schemas, uniquingKeysWith: { $1 }).merging(EmailOpenAPI.schemas, uniquingKeysWith: { $1 }) {
            context.addSchema(name, schema)
        }
        for (name, operation) in LeadsOpenAPI.operations.merging(AuditOpenAPI.operations, uniquingKeysWith: { $1 })
            .merging(WebhookOpenAPI.operations, uniquingKeysWith: { $1 }).merging(EmailOpenAPI.operations, uniquingKeysWith: { $1 }) {
            context.describe(name, operation)
        }
        // The module's own codes (docs/api.md); the runtime documents its own.
        context.describeErrors([
            401: ["UNAUTHENTICATED", "INVALID_SIGNATURE"], 403: ["PERMISSION_DENIED", "STEP_UP_REQUIRED"],
            422: ["IDEMPOTENCY_KEY_REUSED"], 503: ["RBAC_UNAVAILABLE"],
        ])
    }
}

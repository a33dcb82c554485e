import FunctionRuntime

/// The module: registers every function of function.json with the runtime.
public struct FunctionHostModule: FunctionModule {
    public init() {}

    public var settingDefaults: [String: String] {
        [
            "ENVIRONMENT": "development",
            "AUDIT_VERIFY_SCHEDULE": "0 0 2 * * *",
            "EMAIL_DISPATCH_SCHEDULE": "*/5 * * * * *",
        ]
    }

    /// SPEC §3's secrets; outside development the host does not start without them.
    public var requiredSecrets: [String] {
        ["HOST_JWKS_URI", "HOST_RBAC_API_KEY", "HOST_EMAIL_API_KEY", "WEBHOOK_HMAC_SECRET", "DATABASE_URL", "METRICS_TOKEN"]
    }

    public func configure(_ context: inout ModuleContext) async throws {
        let setup = try await ModuleSetup.make(&context, scriptRoot: context.scriptRoot)
        context.functions.register("Health", http: Health())
        context.functions.register(
            "HealthReady", http: HealthReady(checks: [DatabaseReadiness(store: setup.store), CacheReadiness(cache: setup.cache)]))
        let security = setup.security
        context.functions.register("ListLeads", http: security.guarded(ListLeads(store: setup.store)))
        context.functions.register("CreateLead", http: security.guarded(CreateLead(store: setup.store)))
        context.functions.register("GetLead", http: security.guarded(GetLead(store: setup.store)))
        context.functions.register("UpdateLead", http: security.guarded(UpdateLead(store: setup.store)))
        context.functions.register("DeleteLead", http: security.guarded(DeleteLead(store: setup.store)))
        context.functions.register("ExportLeads", http: security.guarded(ExportLeads(store: setup.store)))
        context.functions.register(
            "PurgeRBACCache",
            http: PurgeRBACCache(
                secrets: context.secrets, rbac: setup.rbac, cache: setup.cache, audit: setup.audit, metrics: context.metricsFactory))
        context.functions.register(
            "RevokeSessions",
            http: RevokeSessions(
                secrets: context.secrets, revocations: setup.revocations, cache: setup.cache, audit: setup.audit,
                metrics: context.metricsFactory))
        context.functions.register("SendEmail", http: security.guarded(SendEmail(store: setup.store, outbox: setup.outbox)))
        context.functions.register("EmailOutboxDispatcher", timer: EmailOutboxDispatcher(store: setup.store, outbox: setup.outbox))
        context.functions.register("ListAuditEvents", http: security.guarded(ListAuditEvents(store: setup.store)))
        let tree = AuditTree(store: setup.store)
        context.functions.register("GetAuditCheckpoint", http: security.guarded(GetAuditCheckpoint(tree: tree, keys: setup.checkpointKeys)))
        context.functions.register("GetAuditProof", http: security.guarded(GetAuditProof(tree: tree)))
        context.functions.register("GetAuditConsistency", http: security.guarded(GetAuditConsistency(tree: tree)))
        context.functions.register("GetAuditVerifierKey", http: GetAuditVerifierKey(keys: setup.checkpointKeys))
        context.functions.register("ExportAuditEvents", http: security.guarded(ExportAuditEvents(store: setup.store)))
        context.functions.register(
            "AuditChainVerifier",
            timer: AuditChainVerifierFunction(
                verification: AuditVerification(
                    store: setup.store, logger: context.logger, metrics: context.metricsFactory, keys: setup.checkpointKeys)))
        for (name, schema) in LeadsOpenAPI.schemas.merging(AuditOpenAPI.schemas, uniquingKeysWith: { $1 })
            .merging(WebhookOpenAPI.schemas, uniquingKeysWith: { $1 }).merging(EmailOpenAPI.schemas, uniquingKeysWith: { $1 }) {
            context.addSchema(name, schema)
        }
        for (name, operation) in LeadsOpenAPI.operations.merging(AuditOpenAPI.operations, uniquingKeysWith: { $1 })
            .merging(WebhookOpenAPI.operations, uniquingKeysWith: { $1 }).merging(EmailOpenAPI.operations, uniquingKeysWith: { $1 }) {
            context.describe(name, operation)
        }
    }
}

import Foundation
import FunctionRuntime
import Logging
import ServiceLifecycle

/// Builds the module's shared machinery once from settings: the cache (Redis or in-process),
/// the token verifier, RBAC and the authorizer — against the real host, or the development
/// host when `ENVIRONMENT=development` and no `HOST_*` setting is given.
struct ModuleSetup: Sendable {
    let store: any ModuleStore
    let schema: SchemaGate
    let cache: any KeyValueCache
    let rbac: RBACService
    let security: Security
    let audit: any AuditSink
    let outbox: OutboxSender
    let revocations: Revocations
    let checkpointKeys: CheckpointKeys
    let devHost: DevHostStore?

    static func make(_ context: inout ModuleContext, scriptRoot: String) async throws(ModuleConfigurationError) -> ModuleSetup {
        let settings = try ModuleSettings(context.settings)
        let logger = context.logger
        let schema = SchemaGate(latest: Migrations.postgres.map(\.version).max() ?? 0)
        let store = try await StoreSetup.make(&context, schema: schema)
        // Timers run once per occurrence across every instance sharing the database (docs/runtime.md).
        context.scheduleMonitor = DatabaseScheduleMonitor(store: store, owner: ProcessInfo.processInfo.hostName + ":" + String(ProcessInfo.processInfo.processIdentifier))
        let audit = AuditLog(store: store, logger: logger, metrics: context.metricsFactory)

        let baseCache: any KeyValueCache
        var redis: RedisClient?
        if let url = settings.redisURL {
            do {
                let client = RedisClient(endpoint: try RedisEndpoint(url: url, caFile: settings.tlsCAFile))
                context.services.append(client)
                baseCache = RedisCache(client: client)
                redis = client
            } catch {
                throw ModuleConfigurationError("REDIS_URL: \(error.description)")
            }
        } else {
            baseCache = InProcessCache()
        }
        // Nothing read back from the shared cache is trusted unless it carries our MAC.
        let cache = SignedCache(
            base: baseCache, signingKey: try await cacheSigningKey(&context, shared: redis != nil), logger: logger,
            metrics: context.metricsFactory)

        let hostConfigured = [ModuleSettingSpecs.jwksURI, ModuleSettingSpecs.rbacURL, ModuleSettingSpecs.emailURL]
            .contains { context.settings.nonEmpty($0.name) != nil }
        let useDevHost = context.environment == .development && !hostConfigured
        let jwksSource: JWKSSource
        let rbacSource: any RBACSource
        let emailSender: any EmailSender
        let issuer: String
        let audience: String
        var devHost: DevHostStore?
        if useDevHost {
            let store = DevHostStore(scriptRoot: scriptRoot)
            devHost = store
            jwksSource = JWKSSource(cacheKey: "dev-host:" + scriptRoot) { (try store.jwks(), .seconds(60)) }
            rbacSource = DevHostRBAC(store: store)
            emailSender = DevHostEmail(store: store)
            issuer = settings.jwtIssuer ?? DevHostStore.issuer
            audience = settings.jwtAudience ?? DevHostStore.audience
            context.addInternalEndpoint(prefix: DevHostEndpoints.prefix, handler: DevHostEndpoints(store: store))
            logger.info("development host active", metadata: ["state": .string(store.folder.path)])
        } else {
            let jwksURI: String?
            do {
                jwksURI = try await context.secrets.secret(named: ModuleSettingSpecs.jwksURI.name)
            } catch {
                throw ModuleConfigurationError(error.description)
            }
            guard let jwksURI, let jwksURL = URL(string: jwksURI), OutboundHTTP.isAllowedTarget(jwksURL) else {
                throw ModuleConfigurationError("HOST_JWKS_URI must be set to an https URL")
            }
            guard let configuredIssuer = settings.jwtIssuer, let configuredAudience = settings.jwtAudience else {
                throw ModuleConfigurationError("JWT_ISSUER and JWT_AUDIENCE must be set")
            }
            guard let rbacURL = settings.rbacURL, let parsed = URL(string: rbacURL), OutboundHTTP.isAllowedTarget(parsed) else {
                throw ModuleConfigurationError("HOST_RBAC_API_URL must be set to an https URL")
            }
            let apiKey: String?
            do {
                apiKey = try await context.secrets.secret(named: ModuleSettingSpecs.rbacKey.name)
            } catch {
                throw ModuleConfigurationError(error.description)
            }
            guard let emailURL = settings.emailURL, let parsedEmail = URL(string: emailURL),
                OutboundHTTP.isAllowedTarget(parsedEmail)
            else {
                throw ModuleConfigurationError("HOST_EMAIL_API must be set to an https URL")
            }
            let emailKey: String?
            do {
                emailKey = try await context.secrets.secret(named: ModuleSettingSpecs.emailKey.name)
            } catch {
                throw ModuleConfigurationError(error.description)
            }
            emailSender = HostEmailClient(baseURL: emailURL, apiKey: emailKey)
            jwksSource = .http(uri: jwksURI)
            rbacSource = HostRBACClient(baseURL: rbacURL, apiKey: apiKey)
            issuer = configuredIssuer
            audience = configuredAudience
        }

        let rbac = RBACService(
            source: rbacSource, cache: cache, audit: audit, logger: logger,
            defaultTTL: Double(settings.rbacCacheTTL), staleMax: Double(settings.rbacStaleMax), metrics: context.metricsFactory,
            purgeTable: store)
        if let redis {
            context.services.append(
                redis.subscribe(channel: RBACService.purgeChannel, logger: logger) { message in rbac.applyPurgeMessage(message) })
        }
        // Revocations and purges (docs/operations.md): recorded in the database in every configuration, read from it
        // by the first request and twice a second; Redis, when present, carries the news sooner.
        // Until the first read (or while the database is away) the view is stale: a request reads it again itself
        // (`Revocations.refresh`) and gets 503 if the database does not answer, never an unchecked token.
        let revocations = Revocations(
            table: store, fanOut: redis.map { RevocationFanOut(client: $0, sealer: cache) },
            purgeSink: { rbac.synchronizePurges($0) }, logger: logger, metrics: context.metricsFactory)
        context.services.append(DatabaseRevocationSync(revocations: revocations, logger: logger))
        if let fanOut = revocations.fanOut { context.services.append(fanOut.subscriber(revocations, logger: logger)) }
        let verifier = TokenVerifier(
            jwks: JWKSCache(source: jwksSource, sharedCache: cache, logger: logger), issuer: issuer, audience: audience,
            logins: LoginAudit(cache: cache, sink: audit), revocations: revocations)
        let allowlist = AllowlistSource(.specification)
        context.services.append(PermissionLoader(store: store, allowlist: allowlist, logger: logger))
        let authorizer = Authorizer(
            allowlist: allowlist, rbac: rbac, audit: audit, environment: context.environment,
            superAdminGroup: settings.superAdminGroup, stagingAdminEmails: settings.stagingAdminEmails,
            metrics: context.metricsFactory)
        let policy = settings.rateLimit
        let instances = settings.instanceCountHint
        let limiter: any RateLimiter
        if let redis {
            let shared = RedisRateLimiter(client: redis, policy: policy, instanceCountHint: instances, logger: logger)
            // After the client in the group, so it stops first: held reservations go back while Redis is still reachable.
            context.services.append(RateLimitReservations(limiter: shared))
            limiter = shared
        } else {
            limiter = InProcessRateLimiter(policy: policy)
        }
        let retry = settings.emailRetry
        let outbox = OutboxSender(store: store, sender: emailSender, retry: retry, logger: logger, metrics: context.metricsFactory)
        let checkpointKeys = try await auditSigningKeys(&context, origin: settings.auditLogOrigin, scriptRoot: scriptRoot)
        return ModuleSetup(
            store: store, schema: schema, cache: cache, rbac: rbac,
            security: Security(verifier: verifier, authorizer: authorizer, limiter: limiter, metrics: context.metricsFactory),
            audit: audit, outbox: outbox, revocations: revocations, checkpointKeys: checkpointKeys, devHost: devHost)
    }

    /// `AUDIT_LOG_ORIGIN` and where `AUDIT_SIGNING_KEY` comes from: the secrets provider, or in
    /// development without one a key generated into the development host's folder. Outside
    /// development it is a required secret (the host refuses to start without it); a malformed one
    /// stops start-up here.
    static func auditSigningKeys(
        _ context: inout ModuleContext, origin: String, scriptRoot: String
    ) async throws(ModuleConfigurationError) -> CheckpointKeys {
        guard CheckpointSigner.isValidName(origin) else {
            throw ModuleConfigurationError("AUDIT_LOG_ORIGIN must be 1 to 200 bytes without spaces, '+' or control characters")
        }
        let configured = try? await context.secrets.secret(named: ModuleSettingSpecs.auditSigningKey.name)
        if context.environment == .development, configured == nil || configured?.isEmpty == true {
            return CheckpointKeys(
                origin: origin,
                source: .file(URL(fileURLWithPath: scriptRoot).appendingPathComponent(".fnhost/dev-host/audit-signing-key")))
        }
        if let configured, CheckpointSigner.seed(base64: configured) == nil {
            throw ModuleConfigurationError("AUDIT_SIGNING_KEY must be the base64 of a 32-byte Ed25519 seed")
        }
        if configured == nil {
            context.logger.error("AUDIT_SIGNING_KEY is not set: audit checkpoints and the verifier key answer 503 until it is")
        }
        return CheckpointKeys(origin: origin, source: .secret(context.secrets))
    }

    /// `CACHE_SIGNING_KEY` (at least 32 bytes; its UTF-8 bytes are the HMAC key). Required outside
    /// development when the cache is shared; otherwise a key generated for this process.
    static func cacheSigningKey(_ context: inout ModuleContext, shared: Bool) async throws(ModuleConfigurationError) -> [UInt8] {
        let configured: String?
        do {
            configured = try await context.secrets.secret(named: ModuleSettingSpecs.cacheSigningKey.name)
        } catch {
            throw ModuleConfigurationError(error.description)
        }
        if let configured, !configured.isEmpty {
            guard configured.utf8.count >= 32 else { throw ModuleConfigurationError("CACHE_SIGNING_KEY must be at least 32 bytes") }
            return Array(configured.utf8)
        }
        if shared, context.environment != .development {
            throw ModuleConfigurationError("CACHE_SIGNING_KEY must be set when REDIS_URL is set outside development")
        }
        return SignedCache.generatedKey()
    }
}

/// Reads `module_permissions` once the database answers and makes it the allowlist in force.
/// Until then (or while the database is down at boot) the built-in table — the same rows the migration
/// seeds — applies; data requests answer 503 meanwhile anyway.
struct PermissionLoader: Service {
    let store: any LeadStore
    let allowlist: AllowlistSource
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            if let rows = try? await store.permissionRows(), !rows.isEmpty {
                allowlist.replace(with: PermissionAllowlist(rows: rows))
                logger.info("permission allowlist loaded from module_permissions", metadata: ["rows": .stringConvertible(rows.count)])
                break
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(2)) }
        }
        try? await gracefulShutdown()
    }
}

import FunctionRuntime

/// Every setting the module reads, declared once (name, secret-ness, default, range); the module
/// reads them only through `ModuleSettings`, built once at start-up, and docs/settings.md is checked
/// against this table (`SettingsTableTests`).
enum ModuleSettingSpecs {
    static let databaseURL = SettingSpec("DATABASE_URL", secret: true)
    static let databaseMigrationURL = SettingSpec("DATABASE_MIGRATION_URL", secret: true)
    static let databaseMigrations = SettingSpec("DATABASE_MIGRATIONS", default: "auto")
    static let databasePoolSize = SettingSpec("DATABASE_POOL_SIZE", .number(1...1000), default: "20")
    static let databasePoolKeepOpen = SettingSpec("DATABASE_POOL_KEEP_OPEN", .number(0...1000), default: "0")
    static let databasePooler = SettingSpec("DATABASE_POOLER", default: "none")
    static let redisURL = SettingSpec("REDIS_URL")
    static let tlsCAFile = SettingSpec("TLS_CA_FILE")
    static let cacheSigningKey = SettingSpec("CACHE_SIGNING_KEY", secret: true)
    static let jwksURI = SettingSpec("HOST_JWKS_URI", secret: true)
    static let jwtIssuer = SettingSpec("JWT_ISSUER")
    static let jwtAudience = SettingSpec("JWT_AUDIENCE")
    static let rbacURL = SettingSpec("HOST_RBAC_API_URL")
    static let rbacKey = SettingSpec("HOST_RBAC_API_KEY", secret: true)
    static let emailURL = SettingSpec("HOST_EMAIL_API")
    static let emailKey = SettingSpec("HOST_EMAIL_API_KEY", secret: true)
    static let rbacCacheTTL = SettingSpec("RBAC_CACHE_TTL_SECONDS", .seconds(0...86_400), default: "180")
    static let rbacStaleMax = SettingSpec("RBAC_STALE_MAX_SECONDS", .seconds(0...86_400), default: "600")
    static let superAdminGroup = SettingSpec("SUPER_ADMIN_GROUP", default: "Leaderboard_SuperAdmins")
    static let stagingAdminEmails = SettingSpec("STAGING_PLATFORM_ADMIN_EMAILS")
    static let ratePerSecond = SettingSpec("RATE_LIMIT_PER_SECOND", .number(0.001...1_000_000), default: "50")
    static let rateBurst = SettingSpec("RATE_LIMIT_BURST", .number(1...1_000_000), default: "100")
    static let instanceCountHint = SettingSpec("INSTANCE_COUNT_HINT", .number(1...10_000), default: "1")
    static let webhookSecret = SettingSpec("WEBHOOK_HMAC_SECRET", secret: true)
    static let emailRetryBase = SettingSpec("EMAIL_RETRY_BASE_SECONDS", .number(0.001...3600), default: "2")
    static let emailRetryMax = SettingSpec("EMAIL_RETRY_MAX_SECONDS", .number(0.001...21_600), default: "300")
    // Below a day: the host's idempotency window; a later retry could become a second email.
    static let emailRetryHorizon = SettingSpec("EMAIL_RETRY_HORIZON_SECONDS", .number(1...86_399), default: "21600")
    static let emailDispatchSchedule = SettingSpec("EMAIL_DISPATCH_SCHEDULE", default: "*/5 * * * * *")
    static let auditVerifySchedule = SettingSpec("AUDIT_VERIFY_SCHEDULE", default: "0 0 2 * * *")
    static let auditSigningKey = SettingSpec("AUDIT_SIGNING_KEY", secret: true)
    static let auditLogOrigin = SettingSpec("AUDIT_LOG_ORIGIN", default: CheckpointSigner.defaultOrigin)

    static let all: [SettingSpec] = [
        databaseURL, databaseMigrationURL, databaseMigrations, databasePoolSize, databasePoolKeepOpen, databasePooler, redisURL, tlsCAFile, cacheSigningKey, jwksURI, jwtIssuer,
        jwtAudience, rbacURL, rbacKey, emailURL, emailKey, rbacCacheTTL, rbacStaleMax, superAdminGroup, stagingAdminEmails,
        ratePerSecond, rateBurst, instanceCountHint, webhookSecret, emailRetryBase, emailRetryMax, emailRetryHorizon,
        emailDispatchSchedule, auditVerifySchedule, auditSigningKey, auditLogOrigin,
    ]
}

/// The module's plain (non-secret) settings, parsed and range-checked once; a bad value stops
/// start-up with a line naming the setting.
struct ModuleSettings: Sendable {
    let redisURL: String?
    let tlsCAFile: String?
    let jwtIssuer: String?
    let jwtAudience: String?
    let rbacURL: String?
    let emailURL: String?
    let rbacCacheTTL: Int
    let rbacStaleMax: Int
    let superAdminGroup: String
    let stagingAdminEmails: [String]
    let rateLimit: RateLimitPolicy
    let instanceCountHint: Int
    let emailRetry: RetryPolicy
    let auditLogOrigin: String

    init(_ settings: Settings) throws(ModuleConfigurationError) {
        typealias S = ModuleSettingSpecs
        do {
            redisURL = S.redisURL.text(settings)
            tlsCAFile = S.tlsCAFile.text(settings)
            jwtIssuer = S.jwtIssuer.text(settings)
            jwtAudience = S.jwtAudience.text(settings)
            rbacURL = S.rbacURL.text(settings)
            emailURL = S.emailURL.text(settings)
            rbacCacheTTL = try S.rbacCacheTTL.seconds(settings)
            rbacStaleMax = try S.rbacStaleMax.seconds(settings)
            superAdminGroup = S.superAdminGroup.text(settings) ?? "Leaderboard_SuperAdmins"
            stagingAdminEmails = (S.stagingAdminEmails.text(settings) ?? "").split(separator: ",").map(String.init)
            rateLimit = RateLimitPolicy(perSecond: try S.ratePerSecond.number(settings), burst: Int(try S.rateBurst.number(settings)))
            instanceCountHint = Int(try S.instanceCountHint.number(settings))
            emailRetry = RetryPolicy(
                base: try S.emailRetryBase.number(settings), cap: try S.emailRetryMax.number(settings),
                horizon: try S.emailRetryHorizon.number(settings))
            auditLogOrigin = S.auditLogOrigin.text(settings) ?? CheckpointSigner.defaultOrigin
        } catch {
            throw ModuleConfigurationError(error.description)
        }
    }
}

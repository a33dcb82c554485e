import CoreMetrics
import FunctionRuntime
import HTTPTypes
import Logging

/// An authenticated, authorized caller as a handler sees it.
struct Principal: Sendable {
    let identity: Identity
    /// Module permissions held in the caller's tenant (all of them for a super admin).
    let permissions: Set<ModulePermission>
    let isPlatformSuperAdmin: Bool
    /// The RBAC answer came from a stale entry because the host is down (read-only actions only).
    let degraded: Bool

    var tenantID: TenantID { identity.tenantID }
}

/// Decides whether a verified identity may run a function (docs/identity.md). Every denial carries a
/// machine-readable reason in the log and in `fnhost_authz_denials_total{reason}`.
struct Authorizer: Sendable {
    enum DenialReason: String, Sendable, CaseIterable {
        case missingPermission = "missing_permission"
        case stepUpRequired = "step_up_required"
        case rbacUnavailable = "rbac_unavailable"
    }

    let allowlistSource: AllowlistSource
    var allowlist: PermissionAllowlist { allowlistSource.allowlist }
    let rbac: RBACService
    let audit: any AuditSink
    let environment: DeploymentEnvironment
    let superAdminGroup: String
    let stagingAdminEmails: StagingAdminEmails
    private let denials: [DenialReason: CoreMetrics.Counter]

    init(
        allowlist: AllowlistSource, rbac: RBACService, audit: any AuditSink, environment: DeploymentEnvironment,
        superAdminGroup: String, stagingAdminEmails: [String], metrics: any MetricsFactory
    ) {
        self.allowlistSource = allowlist
        self.rbac = rbac
        self.audit = audit
        self.environment = environment
        self.superAdminGroup = superAdminGroup
        self.stagingAdminEmails = StagingAdminEmails(stagingAdminEmails)
        var denials: [DenialReason: CoreMetrics.Counter] = [:]
        for reason in DenialReason.allCases {
            denials[reason] = CoreMetrics.Counter(
                label: "fnhost_authz_denials_total", dimensions: [("reason", reason.rawValue)], factory: metrics)
        }
        self.denials = denials
    }

    static let stepUpChallenge = #"Bearer error="insufficient_user_authentication""#

    func authorize(_ identity: Identity, policy: FunctionPolicy, logger: Logger) async throws(FunctionError) -> Principal {
        let allowlist = allowlist
        let readOnly = policy.isReadOnly(in: allowlist)
        let resolution: RBACService.Resolution
        do {
            resolution = try await rbac.resolve(tenant: identity.tenantID, user: identity.subject, readOnly: readOnly)
        } catch {
            deny(.rbacUnavailable, identity: identity, logger: logger, detail: nil)
            throw FunctionError(
                status: .serviceUnavailable, code: "RBAC_UNAVAILABLE",
                message: "authorization service unavailable; try again shortly")
        }
        let answer = resolution.answer
        if resolution.denied {
            // The host no longer knows this user in this tenant: no claim or group can override that.
            deny(.missingPermission, identity: identity, logger: logger, detail: "host_denied")
            await audit.record(
                AuditRecord(
                    tenantID: identity.tenantID, actorSub: identity.subject, actorEmail: identity.email,
                    eventType: "PERMISSION_DENIED", severity: .warning, details: ["reason": .string("host_denied")]))
            throw FunctionError.permissionDenied("the host denies this user access to the tenant")
        }
        let superAdmin: SuperAdminSource?
        do {
            superAdmin = try await superAdminSource(identity, answer: answer)
        } catch {
            // A staging override is granted only when its audit event is written.
            throw error.functionError
        }
        let held = superAdmin != nil ? allowlist.all : allowlist.filter(answer.permissions)

        let granting = policy.granting(held)
        guard !granting.isEmpty else {
            let missing = policy.permissions.map(\.rawValue).joined(separator: "|")
            deny(.missingPermission, identity: identity, logger: logger, detail: missing)
            await audit.record(
                AuditRecord(
                    tenantID: identity.tenantID, actorSub: identity.subject, actorEmail: identity.email,
                    eventType: "PERMISSION_DENIED", severity: .warning, details: ["required": .string(missing)]))
            throw FunctionError.permissionDenied("missing permission \(missing)")
        }
        // Step-up is needed only if every permission that grants the action demands it (all-of: any).
        let needsStepUp = policy.needsStepUp(granting, in: allowlist)
        if needsStepUp, !Self.stepUpSatisfied(identity, answer: answer) {
            deny(.stepUpRequired, identity: identity, logger: logger, detail: granting.first?.rawValue)
            await audit.record(
                AuditRecord(
                    tenantID: identity.tenantID, actorSub: identity.subject, actorEmail: identity.email,
                    eventType: "STEP_UP_REQUIRED", severity: .info,
                    details: ["permission": .string(granting.first?.rawValue ?? "")]))
            var headers = HTTPFields()
            headers[.wwwAuthenticate] = Self.stepUpChallenge
            throw FunctionError(
                status: .forbidden, code: "STEP_UP_REQUIRED", message: "this action requires multi-factor authentication",
                headers: headers)
        }
        return Principal(identity: identity, permissions: held, isPlatformSuperAdmin: superAdmin != nil, degraded: resolution.degraded)
    }

    /// `amr` has `mfa`, or the host vouches for it (`assurance.mfa` or level `high`).
    static func stepUpSatisfied(_ identity: Identity, answer: RBACAnswer) -> Bool {
        ByteText.contains(identity.amr, "mfa") || answer.assurance?.mfa == true
            || answer.assurance?.level.map { ByteText.equal($0, "high") } == true
    }

    enum SuperAdminSource: String, Sendable {
        case claim, group, stagingOverride = "staging_override"
    }

    /// docs/identity.md order: (1) the claim, or the group in the token or the RBAC answer; (2) only in
    /// staging, an allow-listed email, audited every time; (3) otherwise not.
    func superAdminSource(_ identity: Identity, answer: RBACAnswer) async throws(StoreUnavailable) -> SuperAdminSource? {
        if identity.platformSuperAdminClaim { return .claim }
        if ByteText.contains(identity.groups, superAdminGroup) || ByteText.contains(answer.groups, superAdminGroup) { return .group }
        if environment == .staging, stagingAdminEmails.contains(identity.email) {
            try await audit.require(
                AuditRecord(
                    tenantID: identity.tenantID, actorSub: identity.subject, actorEmail: identity.email,
                    eventType: "PLATFORM_ADMIN_STAGING_OVERRIDE", severity: .high,
                    details: ["email": .string(identity.email)]))
            return .stagingOverride
        }
        return nil
    }

    private func deny(_ reason: DenialReason, identity: Identity, logger: Logger, detail: String?) {
        denials[reason]?.increment()
        var metadata: Logger.Metadata = [
            "decision": "deny", "reason": .string(reason.rawValue), "tenant_id": .string(identity.tenantID.text),
            "sub": .string(identity.subject.text),
        ]
        if let detail { metadata["detail"] = .string(detail) }
        logger.info("authorization denied", metadata: metadata)
    }
}

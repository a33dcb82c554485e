import CoreMetrics

/// Which rows a PostgreSQL transaction may see and write under row-level security (docs/data.md):
/// one tenant's (`app.tenant_id`), none beyond tables without tenants, or — on the explicit
/// cross-tenant path only — every tenant's (`app.cross_tenant = on`). Tenant requests only ever
/// build `.tenant` from their principal; `.crossTenant` is built in five places (the verifier's
/// chain scan, the outbox dispatcher's claim, the platform chain, a super admin's reads of other
/// chains, the revocation sync without Redis), each with its reason, and every use is counted by reason
/// (`fnhost_db_cross_tenant_total{reason}`).
enum DatabaseScope: Sendable, Equatable {
    case tenant(String)
    case crossTenant(Reason)
    /// Tables without tenant rows only (timers, permissions, migrations).
    case noTenant

    enum Reason: String, Sendable, CaseIterable {
        case verifier = "audit_verifier"
        case outboxDispatcher = "outbox_dispatcher"
        case platformChain = "platform_chain"
        case superAdminAudit = "super_admin_audit"
        /// Every instance reads every tenant's revocations (without Redis).
        case revocationSync = "revocation_sync"
    }

    /// The audit chain's scope: a tenant chain is that tenant's rows, `platform` is cross-tenant.
    static func chain(_ chain: String) -> DatabaseScope {
        chain.utf8.elementsEqual(ChainID.platformName.utf8) ? .crossTenant(.platformChain) : .tenant(chain)
    }

    /// `app.tenant_id` ('' matches no row: tenant ids are never empty).
    var tenantSetting: String {
        if case .tenant(let id) = self { return id }
        return ""
    }

    var crossTenantSetting: String {
        if case .crossTenant = self { return "on" }
        return "off"
    }

    static func counters(_ metrics: any MetricsFactory) -> [Reason: CoreMetrics.Counter] {
        Dictionary(uniqueKeysWithValues: Reason.allCases.map {
            ($0, CoreMetrics.Counter(label: "fnhost_db_cross_tenant_total", dimensions: [("reason", $0.rawValue)], factory: metrics))
        })
    }
}

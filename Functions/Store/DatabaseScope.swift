import CoreMetrics

/// Which rows a PostgreSQL transaction may see and write under row-level security (docs/data.md):
/// one tenant's (`app.tenant_id`), the platform audit chain's (`app.tenant_id = 'platform'`, a name no
/// tenant can have), none beyond tables without tenants, or — on the cross-tenant path only — what one
/// of the schema owner's job functions answers (migration 17: the outbox claim and backlog, the
/// verifier's chain list and positions, a super admin's read of every chain, the revocation and purge
/// poll). Tenant requests only ever build `.tenant` from their principal; `.crossTenant` sets no
/// tenant at all and is built only around those functions, each with its reason, and every use is
/// counted by reason (`fnhost_db_cross_tenant_total{reason}`). No setting of this role's session opens
/// more than one tenant: the cross-tenant policies name the schema owner, whose functions turn
/// `app.cross_tenant` on for their own duration only.
enum DatabaseScope: Sendable, Equatable {
    case tenant(String)
    /// The platform audit chain (super-admin events), no tenant's rows.
    case platform
    case crossTenant(Reason)
    /// Tables without tenant rows only (timers, permissions, migrations).
    case noTenant

    enum Reason: String, Sendable, CaseIterable {
        case verifier = "audit_verifier"
        case outboxDispatcher = "outbox_dispatcher"
        case superAdminAudit = "super_admin_audit"
        /// Every instance reads every tenant's revocations and purges.
        case revocationSync = "revocation_sync"
    }

    /// The audit chain's scope: a tenant chain is that tenant's rows, `platform` is the platform's.
    static func chain(_ chain: String) -> DatabaseScope {
        chain.utf8.elementsEqual(ChainID.platformName.utf8) ? .platform : .tenant(chain)
    }

    /// `app.tenant_id` ('' matches no row: tenant ids are never empty).
    var tenantSetting: String {
        switch self {
        case .tenant(let id): id
        case .platform: ChainID.platformName
        case .crossTenant, .noTenant: ""
        }
    }

    static func counters(_ metrics: any MetricsFactory) -> [Reason: CoreMetrics.Counter] {
        Dictionary(uniqueKeysWithValues: Reason.allCases.map {
            ($0, CoreMetrics.Counter(label: "fnhost_db_cross_tenant_total", dimensions: [("reason", $0.rawValue)], factory: metrics))
        })
    }
}

import Synchronization

/// The module's permissions (docs/identity.md). Host permissions outside this list are ignored.
enum ModulePermission: String, Sendable, CaseIterable, Hashable {
    case leadsRead = "LEADS_READ"
    case leadsWrite = "LEADS_WRITE"
    case leadsDelete = "LEADS_DELETE"
    case exportsExecute = "EXPORTS_EXECUTE"
    case auditRead = "AUDIT_READ"
    case emailSend = "EMAIL_SEND"

    /// The permission whose name has exactly these bytes (a host's name is compared on bytes, never as a Swift
    /// `String`, which would match canonically equivalent spellings).
    init?(named name: String) {
        guard let match = Self.allCases.first(where: { ByteText.equal($0.rawValue, name) }) else { return nil }
        self = match
    }
}

/// One row of the `module_permissions` allowlist.
struct PermissionRule: Sendable, Equatable {
    let permission: ModulePermission
    let readOnly: Bool
    let stepUp: Bool
}

/// The allowlist as data. Seeded from docs/identity.md until the store's `module_permissions` table
/// replaces the source (same rows, loaded at start-up).
struct PermissionAllowlist: Sendable {
    let rules: [ModulePermission: PermissionRule]

    static let specification = PermissionAllowlist(rules: [
        .leadsRead: PermissionRule(permission: .leadsRead, readOnly: true, stepUp: false),
        .leadsWrite: PermissionRule(permission: .leadsWrite, readOnly: false, stepUp: false),
        .leadsDelete: PermissionRule(permission: .leadsDelete, readOnly: false, stepUp: true),
        .exportsExecute: PermissionRule(permission: .exportsExecute, readOnly: false, stepUp: true),
        .auditRead: PermissionRule(permission: .auditRead, readOnly: true, stepUp: false),
        .emailSend: PermissionRule(permission: .emailSend, readOnly: false, stepUp: false),
    ])

    /// Host permission names → module permissions; unknown names dropped.
    func filter(_ names: [String]) -> Set<ModulePermission> {
        Set(names.compactMap { ModulePermission(named: $0) }.filter { rules[$0] != nil })
    }

    var all: Set<ModulePermission> { Set(rules.keys) }

    /// The allowlist from `module_permissions` rows; names the module does not know are ignored.
    init(rows: [(String, Bool, Bool)]) {
        var rules: [ModulePermission: PermissionRule] = [:]
        for (name, readOnly, stepUp) in rows {
            guard let permission = ModulePermission(named: name) else { continue }
            rules[permission] = PermissionRule(permission: permission, readOnly: readOnly, stepUp: stepUp)
        }
        self.rules = rules
    }

    init(rules: [ModulePermission: PermissionRule]) {
        self.rules = rules
    }
}

/// The allowlist in force: the built-in table until the store's `module_permissions` table is read at
/// start-up, then that table (the data is the source of truth).
final class AllowlistSource: Sendable {
    private let current: Mutex<PermissionAllowlist>

    init(_ initial: PermissionAllowlist) {
        current = Mutex(initial)
    }

    var allowlist: PermissionAllowlist { current.withLock { $0 } }

    func replace(with allowlist: PermissionAllowlist) {
        current.withLock { $0 = allowlist }
    }
}

/// What a function requires, declared next to it (not coded inside the handler).
struct FunctionPolicy: Sendable {
    enum Requirement: Sendable {
        case permission(ModulePermission)
        case anyOf([ModulePermission])
        /// Every one of them (e.g. an audit export: AUDIT_READ and EXPORTS_EXECUTE).
        case allOf([ModulePermission])
    }

    let requirement: Requirement

    static func requires(_ permission: ModulePermission) -> FunctionPolicy {
        FunctionPolicy(requirement: .permission(permission))
    }

    static func requiresAny(_ permissions: [ModulePermission]) -> FunctionPolicy {
        FunctionPolicy(requirement: .anyOf(permissions))
    }

    static func requiresAll(_ permissions: [ModulePermission]) -> FunctionPolicy {
        FunctionPolicy(requirement: .allOf(permissions))
    }

    /// The permissions of `held` through which the caller may act (empty: denied).
    func granting(_ held: Set<ModulePermission>) -> [ModulePermission] {
        switch requirement {
        case .allOf(let all): all.allSatisfy(held.contains) ? all : []
        case .permission, .anyOf: permissions.filter(held.contains)
        }
    }

    /// Step-up applies when every granting permission demands it, or (all-of) when any does.
    func needsStepUp(_ granting: [ModulePermission], in allowlist: PermissionAllowlist) -> Bool {
        switch requirement {
        case .allOf: granting.contains { allowlist.rules[$0]?.stepUp == true }
        case .permission, .anyOf: granting.allSatisfy { allowlist.rules[$0]?.stepUp == true }
        }
    }

    var permissions: [ModulePermission] {
        switch requirement {
        case .permission(let permission): [permission]
        case .anyOf(let permissions), .allOf(let permissions): permissions
        }
    }

    /// Read-only when every permission that could grant it is read-only (a stale RBAC entry may serve it).
    func isReadOnly(in allowlist: PermissionAllowlist) -> Bool {
        permissions.allSatisfy { allowlist.rules[$0]?.readOnly == true }
    }
}

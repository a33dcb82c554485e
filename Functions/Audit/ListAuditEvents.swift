import FunctionRuntime

/// `GET /api/audit?tenant_id=&event_type=&since=&until=&actor_sub=&limit=&cursor=` — audit events, newest first.
/// The caller's own chain by default; another tenant's chain, `platform`, or `*` (every chain)
/// only for a platform super admin (403 otherwise, docs/api.md).
struct ListAuditEvents: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.auditRead)
    static let eventTypePattern = "^[A-Z][A-Z_]{0,63}$"
    static let tenantPattern = "^[^\\u0000-\\u001F]{1,128}$"

    let store: any AuditStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let query = try Self.query(request, principal: principal)
        let page: [AuditEvent]
        do {
            var lookahead = query
            lookahead.limit += 1
            page = try await store.auditEvents(lookahead)
        } catch {
            throw error.functionError
        }
        return .page(page, limit: query.limit, cursor: { AuditCursor(occurredAt: $0.occurredAt, seq: $0.seq, chainID: $0.chainID).encoded }) {
            event, writer in event.write(to: &writer)
        }
    }

    /// The chain (or `*`, when `allowAll`) a request reads: the caller's own by default; another
    /// tenant's, `platform` or `*` only for a platform super admin.
    static func scope(_ request: FunctionRequest, principal: Principal, allowAll: Bool = true) throws(FunctionError) -> AuditQuery.Scope {
        guard let requested = try request.singleQuery("tenant_id") else { return .chain(.tenant(principal.tenantID)) }
        // Byte-exact: a canonically equivalent spelling of the caller's tenant is another tenant.
        guard Identifier<UserKind>.isWellFormed(requested) else {
            throw .validationFailed(allowAll ? "parameter 'tenant_id' must be a tenant id or *" : "parameter 'tenant_id' must be a tenant id")
        }
        if requested.bytesEqual("*") {
            guard allowAll else { throw .validationFailed("parameter 'tenant_id' must name one chain here, not *") }
        }
        let wanted: AuditQuery.Scope = requested.bytesEqual("*") ? .all : .chain(ChainID(stored: requested))
        if wanted == .chain(.tenant(principal.tenantID)) { return wanted }
        guard principal.isPlatformSuperAdmin else {
            throw .permissionDenied("reading another tenant's audit events needs a platform super admin")
        }
        return wanted
    }

    static func query(_ request: FunctionRequest, principal: Principal) throws(FunctionError) -> AuditQuery {
        let scope = try Self.scope(request, principal: principal)
        var eventType: String?
        if let type = try request.singleQuery("event_type") {
            guard (1...64).contains(type.utf8.count), let first = type.utf8.first, (0x41...0x5A).contains(first),
                type.utf8.allSatisfy({ (0x41...0x5A).contains($0) || $0 == 0x5F })
            else { throw .validationFailed("parameter 'event_type' must be an event type such as LEAD_CREATED") }
            eventType = type
        }
        var since: String?
        if let text = try request.singleQuery("since") {
            guard let canonical = Timestamps.canonical(rfc3339: text) else {
                throw .validationFailed("parameter 'since' must be an RFC 3339 date-time")
            }
            since = canonical
        }
        var until: String?
        if let text = try request.singleQuery("until") {
            guard let canonical = Timestamps.canonical(rfc3339: text) else {
                throw .validationFailed("parameter 'until' must be an RFC 3339 date-time")
            }
            until = canonical
        }
        var actor: UserID?
        if let text = try request.singleQuery("actor_sub") {
            guard let id = UserID(validating: text) else { throw .validationFailed("parameter 'actor_sub' must be a user id") }
            actor = id
        }
        let cursor = try request.singleQuery("cursor").map { (text) throws(FunctionError) in try AuditCursor(decoding: text) }
        return AuditQuery(
            scope: scope, eventType: eventType, since: since, until: until, actorSub: actor, cursor: cursor,
            limit: try LeadRequests.limit(request))
    }
}

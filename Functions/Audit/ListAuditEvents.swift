import FunctionRuntime

/// `GET /api/audit?tenant_id=&event_type=&since=&limit=&cursor=` — audit events, newest first.
/// The caller's own chain by default; another tenant's chain, `platform`, or `*` (every chain)
/// only for a platform super admin (403 otherwise, SPEC §7).
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

    static func query(_ request: FunctionRequest, principal: Principal) throws(FunctionError) -> AuditQuery {
        let scope: AuditQuery.Scope
        switch request.query["tenant_id"] {
        case nil:
            scope = .chain(principal.tenantID)
        case let requested? where requested == principal.tenantID:
            scope = .chain(requested)
        case let requested?:
            guard !requested.isEmpty, requested.utf8.count <= 128, !requested.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                throw .validationFailed("parameter 'tenant_id' must be a tenant id or *")
            }
            guard principal.isPlatformSuperAdmin else {
                throw .permissionDenied("reading another tenant's audit events needs a platform super admin")
            }
            scope = requested == "*" ? .all : .chain(requested)
        }
        var eventType: String?
        if let type = request.query["event_type"] {
            guard (1...64).contains(type.utf8.count), let first = type.utf8.first, (0x41...0x5A).contains(first),
                type.utf8.allSatisfy({ (0x41...0x5A).contains($0) || $0 == 0x5F })
            else { throw .validationFailed("parameter 'event_type' must be an event type such as LEAD_CREATED") }
            eventType = type
        }
        var since: String?
        if let text = request.query["since"] {
            guard let canonical = Timestamps.canonical(rfc3339: text) else {
                throw .validationFailed("parameter 'since' must be an RFC 3339 date-time")
            }
            since = canonical
        }
        let cursor = try request.query["cursor"].map { (text) throws(FunctionError) in try AuditCursor(decoding: text) }
        return AuditQuery(scope: scope, eventType: eventType, since: since, cursor: cursor, limit: try LeadRequests.limit(request))
    }
}

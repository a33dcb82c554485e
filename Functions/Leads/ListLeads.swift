import FunctionRuntime

/// `GET /api/leads?limit=N&cursor=C` — the tenant's leads, newest first, keyset-paginated.
struct ListLeads: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsRead)
    let store: any LeadStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let limit = try LeadRequests.limit(request)
        let cursor = try LeadRequests.cursor(request)
        let page: [LeadJSON]
        do {
            page = try await store.listJSON(tenant: principal.tenantID, limit: limit + 1, after: cursor)
        } catch {
            throw error.functionError
        }
        return .page(page, limit: limit, cursor: \.cursor.encoded) { lead, writer in writer.raw(lead.json) }
    }
}

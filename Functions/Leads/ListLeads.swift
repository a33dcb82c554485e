import FunctionRuntime

/// `GET /api/leads?limit=N&cursor=C` — the tenant's leads, newest first, keyset-paginated.
struct ListLeads: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsRead)
    let store: any LeadStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let limit = try LeadRequests.limit(request)
        let cursor = try LeadRequests.cursor(request)
        let page: LeadPage
        do {
            page = try await store.listPage(tenant: principal.tenantID, limit: limit, after: cursor)
        } catch {
            throw error.functionError
        }
        let items = page.items
        let next = page.next?.encoded
        return .json { writer in
            writer.beginObject()
            writer.key("items")
            writer.raw(items)
            writer.field("next_cursor", next)
            writer.endObject()
        }
    }
}

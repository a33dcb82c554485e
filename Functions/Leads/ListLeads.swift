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
        let items = page.prefix(limit)
        let next = page.count > limit ? items.last.map(\.cursor.encoded) : nil
        return .json { writer in
            writer.beginObject()
            writer.key("items")
            writer.beginArray()
            for lead in items {
                writer.comma()
                writer.raw(lead.json)
            }
            writer.endArray()
            writer.field("next_cursor", next)
            writer.endObject()
        }
    }
}

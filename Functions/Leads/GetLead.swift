import FunctionRuntime

/// `GET /api/leads/{id}` — one lead of the caller's tenant (another tenant's id is 404).
struct GetLead: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsRead)
    let store: any LeadStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let id = try LeadID.parse(request.pathParameters["id"])
        let lead: Lead?
        do {
            lead = try await store.get(tenant: principal.tenantID, id: id)
        } catch {
            throw error.functionError
        }
        guard let lead else { throw FunctionError.notFound("no lead \(id)") }
        return LeadRequests.lead(lead)
    }
}

import FunctionRuntime

/// `POST /api/leads` — creates a lead in the caller's tenant; audits `LEAD_CREATED` in the same transaction.
struct CreateLead: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsWrite)
    let store: any LeadStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let fields = try LeadFields.parse(try LeadRequests.jsonBody(request), creating: true)
        let now = Timestamps.now()
        var lead = Lead(
            id: RequestIDs.generate(), name: "", email: "", status: "new", createdBy: principal.identity.subject.text,
            createdAt: now, updatedAt: now)
        if case .set(let name) = fields.name { lead.name = name }
        if case .set(let email) = fields.email { lead.email = email }
        if case .set(let phone) = fields.phone { lead.phone = phone }
        if case .set(let company) = fields.company { lead.company = company }
        if case .set(let status) = fields.status { lead.status = status }
        if case .set(let notes) = fields.notes { lead.notes = notes }
        do {
            try await store.create(
                tenant: principal.tenantID, lead: lead,
                audit: .lead("LEAD_CREATED", principal: principal, details: ["lead_id": .string(lead.id)]))
        } catch {
            throw error.functionError
        }
        var response = LeadRequests.lead(lead, status: .created)
        response.headers[.location] = "/api/leads/\(lead.id)"
        return response
    }
}

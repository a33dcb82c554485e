import FunctionRuntime

/// `PATCH /api/leads/{id}` — changes the fields present in the body; audits `LEAD_UPDATED` (with the
/// names of the changed fields) in the same transaction.
struct UpdateLead: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsWrite)
    let store: any LeadStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let id = try LeadID.parse(request.pathParameters["id"])
        let fields = try LeadFields.parse(try LeadRequests.jsonBody(request), creating: false)
        let lead: Lead?
        do {
            // A body without a writable field (`{}`, or only `tenant_id`) changes nothing: it answers the lead as it is.
            lead = fields.isEmpty
                ? try await store.get(tenant: principal.tenantID, id: id)
                : try await store.update(
                    tenant: principal.tenantID, id: id, fields: fields, updatedAt: Timestamps.now(),
                    audit: .lead(
                        "LEAD_UPDATED", principal: principal,
                        details: ["lead_id": .string(id), "fields": .array(fields.names.map(JSONValue.string))]))
        } catch {
            throw error.functionError
        }
        guard let lead else { throw FunctionError.notFound("no lead \(id)") }
        return LeadRequests.lead(lead)
    }
}

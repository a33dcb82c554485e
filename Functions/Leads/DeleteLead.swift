import FunctionRuntime

/// `DELETE /api/leads/{id}` — step-up required; audits `LEAD_DELETED` in the same transaction.
struct DeleteLead: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsDelete)
    let store: any LeadStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let id = try LeadID.parse(request.pathParameters["id"])
        let deleted: Bool
        do {
            deleted = try await store.delete(
                tenant: principal.tenantID, id: id,
                audit: .lead("LEAD_DELETED", principal: principal, details: ["lead_id": .string(id)]))
        } catch {
            throw error.functionError
        }
        guard deleted else { throw FunctionError.notFound("no lead \(id)") }
        return .noContent()
    }
}

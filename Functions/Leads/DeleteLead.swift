import FunctionRuntime

/// `DELETE /api/leads/{id}` — step-up required; audits `LEAD_DELETED`.
struct DeleteLead: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsDelete)
    let store: any LeadStore
    let audit: any AuditSink

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let id = try LeadID.parse(request.pathParameters["id"])
        let deleted: Bool
        do {
            deleted = try await store.delete(tenant: principal.tenantID, id: id)
        } catch {
            throw error.functionError
        }
        guard deleted else { throw FunctionError.notFound("no lead \(id)") }
        await audit.record(.lead("LEAD_DELETED", principal: principal, details: ["lead_id": .string(id)]))
        return .noContent()
    }
}

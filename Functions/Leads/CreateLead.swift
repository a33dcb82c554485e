import Crypto
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
        var body = JSONWriter(capacity: 320)
        lead.write(to: &body)
        let response = String(decoding: body.bytes, as: UTF8.self)
        var idempotency: CreateIdempotency?
        if let header = request.headers[SendEmail.idempotencyKeyHeader] {
            guard IdempotencyKeys.isValidHeader(header) else {
                throw FunctionError.validationFailed("header 'Idempotency-Key' must be 1 to 255 visible ASCII characters")
            }
            idempotency = CreateIdempotency(
                key: IdempotencyKeys.derived(tenant: principal.tenantID, header: header), requestHash: Self.fingerprint(lead),
                response: response)
        }
        let outcome: CreateOutcome
        do {
            outcome = try await store.create(
                tenant: principal.tenantID, lead: lead,
                audit: .lead("LEAD_CREATED", principal: principal, details: ["lead_id": .string(lead.id)]), idempotency: idempotency)
        } catch {
            throw error.functionError
        }
        let answer: String
        switch outcome {
        case .created: answer = response
        case .replayed(let first): answer = first
        case .conflict:
            throw FunctionError(
                status: .unprocessableContent, code: "IDEMPOTENCY_KEY_REUSED",
                message: "this Idempotency-Key was used with a different request")
        }
        var reply = FunctionResponse.json(Array(answer.utf8), status: .created)
        if let id = Self.leadID(inResponse: answer) { reply.headers[.location] = "/api/leads/\(id)" }
        return reply
    }

    /// What makes two creates the same request: the fields the client set (not the generated id or times).
    static func fingerprint(_ lead: Lead) -> String {
        var writer = JSONWriter()
        JSONValue.object([
            "name": .string(lead.name), "email": .string(lead.email), "phone": lead.phone.map(JSONValue.string) ?? .null,
            "company": lead.company.map(JSONValue.string) ?? .null, "status": .string(lead.status),
            "notes": lead.notes.map(JSONValue.string) ?? .null,
        ]).write(to: &writer)
        return Hex.encode(SHA256.hash(data: writer.bytes))
    }

    static func leadID(inResponse text: String) -> String? {
        (try? JSONReader.parse(Array(text.utf8)))?["id"]?.stringValue
    }
}

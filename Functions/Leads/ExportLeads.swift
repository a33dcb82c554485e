import FunctionRuntime
import HTTPTypes
import NIOCore

/// `POST /api/exports/leads` — the tenant's leads as RFC 4180 CSV, streamed page by page so a
/// large tenant never sits in memory; step-up required; audits `EXPORT_EXECUTED` with the row count.
struct ExportLeads: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.exportsExecute)
    static let pageSize = 500
    let store: any LeadStore
    let audit: any AuditSink

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        // Fail before the first byte when the database is down, so the client gets a 503, not a cut stream.
        guard await store.ping() else { throw StoreUnavailable(description: "ping failed").functionError }
        var headers = HTTPFields()
        headers[.contentType] = "text/csv; charset=utf-8"
        headers[.contentDisposition] = #"attachment; filename="leads.csv""#
        let store = store
        let audit = audit
        return FunctionResponse(
            status: .ok, headers: headers,
            body: .stream { writer in
                try await writer.write(ByteBuffer(string: Lead.csvHeader))
                var rows = 0
                var buffered = ByteBuffer()
                try await store.forEachPage(tenant: principal.tenantID, pageSize: Self.pageSize) { page in
                    for lead in page { buffered.writeString(lead.csvRecord()) }
                    rows += page.count
                    try await writer.write(buffered)
                    buffered.clear()
                }
                await audit.record(.lead("EXPORT_EXECUTED", principal: principal, details: ["rows": .number(Double(rows))]))
            })
    }
}

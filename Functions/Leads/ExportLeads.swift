import FunctionRuntime
import HTTPTypes
import NIOCore

/// `POST /api/exports/leads` — the tenant's leads as RFC 4180 CSV, streamed page by page so a
/// large tenant never sits in memory; step-up required; audits `EXPORT_EXECUTED` with the row count.
struct ExportLeads: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.exportsExecute)
    static let pageSize = 500
    let store: any ModuleStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        // Fail before the first byte when the database is down, so the client gets a 503, not a cut stream.
        guard await store.ping() else { throw StoreUnavailable(description: "ping failed").functionError }
        var headers = HTTPFields()
        headers[.contentType] = "text/csv; charset=utf-8"
        headers[.contentDisposition] = #"attachment; filename="leads.csv""#
        let store = store
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
                // The event is written before the stream ends: if it cannot be, the response is cut
                // (no terminating chunk), so the client never holds a complete, unaudited export.
                try await store.append(.lead("EXPORT_EXECUTED", principal: principal, details: ["rows": .number(Double(rows))]))
            })
    }
}

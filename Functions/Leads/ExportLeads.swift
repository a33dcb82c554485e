import FunctionRuntime
import HTTPTypes
import NIOCore

/// `POST /api/exports/leads` — the tenant's leads as RFC 4180 CSV, streamed page by page so a
/// large tenant never sits in memory; step-up required; audits `EXPORT_EXECUTED` with the row count
/// and whether it completed.
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
                // Audited however it ends (docs/api.md): on completion, and when the client goes away or the
                // database fails mid-stream, with the rows sent until then. The append runs in a
                // transaction of its own that the request's cancellation cannot stop.
                var rows = 0
                do {
                    try await writer.write(ByteBuffer(string: Lead.csvHeader))
                    var buffered = ByteBuffer()
                    try await store.forEachPage(tenant: principal.tenantID, pageSize: Self.pageSize) { page in
                        for lead in page { buffered.writeString(lead.csvRecord()) }
                        try await writer.write(buffered)
                        rows += page.count
                        buffered.clear()
                    }
                } catch {
                    _ = try? await store.append(
                        .lead(
                            "EXPORT_EXECUTED", principal: principal,
                            details: ["rows": .number(Double(rows)), "completed": .bool(false)]))
                    throw error
                }
                // The event is written before the stream ends: if it cannot be, the response is cut
                // (no terminating chunk), so the client never holds a complete, unaudited export.
                try await store.append(
                    .lead("EXPORT_EXECUTED", principal: principal, details: ["rows": .number(Double(rows)), "completed": .bool(true)]))
            })
    }
}

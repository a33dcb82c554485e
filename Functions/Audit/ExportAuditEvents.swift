import FunctionRuntime
import HTTPTypes
import NIOCore

/// `POST /api/exports/audit?event_type=&since=&until=&actor_sub=&tenant_id=` — audit events as
/// NDJSON (one AuditEvent per line, oldest first), streamed page by page; AUDIT_READ and
/// EXPORTS_EXECUTE with step-up; the chain scope as `GET /api/audit` (`*` for a super admin).
/// Audited `EXPORT_EXECUTED` with `"kind": "audit"`, the rows sent and whether it completed.
struct ExportAuditEvents: AuthorizedFunction {
    static let policy = FunctionPolicy.requiresAll([.auditRead, .exportsExecute])
    static let pageSize = 500
    let store: any ModuleStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        var query = try ListAuditEvents.query(request, principal: principal)
        query.oldestFirst = true
        query.limit = Self.pageSize
        guard query.cursor == nil else { throw FunctionError.validationFailed("parameter 'cursor' is not used by the export") }
        guard await store.ping() else { throw StoreUnavailable(description: "ping failed").functionError }
        var headers = HTTPFields()
        headers[.contentType] = "application/x-ndjson"
        headers[.contentDisposition] = #"attachment; filename="audit.ndjson""#
        let store = store
        let scope: String
        switch query.scope {
        case .all: scope = "*"
        case .chain(let chain): scope = chain.text
        }
        @Sendable func record(rows: Int, completed: Bool) -> AuditRecord {
            .lead(
                "EXPORT_EXECUTED", principal: principal,
                details: ["kind": .string("audit"), "tenant_id": .string(scope), "rows": .number(Double(rows)), "completed": .bool(completed)])
        }
        let first = query
        return FunctionResponse(
            status: .ok, headers: headers,
            body: .stream { writer in
                var rows = 0
                var page = first
                do {
                    while true {
                        let events = try await store.auditEvents(page)
                        var buffer = ByteBuffer()
                        for event in events {
                            var json = JSONWriter(capacity: 512)
                            event.write(to: &json)
                            buffer.writeBytes(json.bytes)
                            buffer.writeInteger(UInt8(ascii: "\n"))
                        }
                        if buffer.readableBytes > 0 { try await writer.write(buffer) }
                        rows += events.count
                        guard events.count == page.limit, let last = events.last else { break }
                        page.cursor = AuditCursor(occurredAt: last.occurredAt, seq: last.seq, chainID: last.chainID)
                    }
                } catch {
                    _ = try? await store.append(record(rows: rows, completed: false))
                    throw error
                }
                // Written before the stream ends, as for the leads export: no complete, unaudited export.
                try await store.append(record(rows: rows, completed: true))
            })
    }
}

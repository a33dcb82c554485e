import FunctionRuntime
import HTTPTypes
import NIOCore

/// Request parsing shared by the leads functions.
enum LeadRequests {
    /// A JSON body is required: `Content-Type: application/json` (any charset), at most 1 MiB (the host enforces).
    static func jsonBody(_ request: FunctionRequest) throws(FunctionError) -> [UInt8] {
        guard let type = request.headers[.contentType]?.lowercased(),
            type == "application/json" || type.hasPrefix("application/json;")
        else { throw .unsupportedMediaType() }
        return Array(request.body.readableBytesView)
    }

    static func limit(_ request: FunctionRequest) throws(FunctionError) -> Int {
        guard let text = try request.singleQuery("limit") else { return 50 }
        guard let limit = Int(text), (1...200).contains(limit) else {
            throw .validationFailed("parameter 'limit' must be a whole number from 1 to 200")
        }
        return limit
    }

    static func cursor(_ request: FunctionRequest) throws(FunctionError) -> LeadCursor? {
        guard let text = try request.singleQuery("cursor") else { return nil }
        return try LeadCursor(decoding: text)
    }

    static func lead(_ lead: Lead, status: HTTPResponse.Status = .ok) -> FunctionResponse {
        .json(status: status) { lead.write(to: &$0) }
    }
}

extension FunctionResponse {
    /// `{"items":[…],"next_cursor":C|null}` of a page fetched with one row of lookahead: the first
    /// `limit` rows are the items; the extra row, if any, says there is a next page after the last item.
    static func page<Row>(
        _ rows: [Row], limit: Int, cursor: (Row) -> String, write: (Row, inout JSONWriter) -> Void
    ) -> FunctionResponse {
        let items = rows.prefix(limit)
        let next = rows.count > limit ? items.last.map(cursor) : nil
        return .json { writer in
            writer.beginObject()
            writer.key("items")
            writer.beginArray()
            for row in items {
                writer.comma()
                write(row, &writer)
            }
            writer.endArray()
            writer.field("next_cursor", next)
            writer.endObject()
        }
    }
}

extension AuditRecord {
    static func lead(_ type: String, principal: Principal, details: [String: JSONValue]) -> AuditRecord {
        AuditRecord(
            tenantID: principal.tenantID, actorSub: principal.identity.subject, actorEmail: principal.identity.email,
            eventType: type, severity: .info, details: details)
    }
}

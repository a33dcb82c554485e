import FunctionRuntime
import NIOCore

/// `GET /api/leads?limit=N&cursor=C` — the tenant's leads, newest first, keyset-paginated.
struct ListLeads: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.leadsRead)
    let store: any LeadStore

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let limit = try LeadRequests.limit(request)
        let cursor = try LeadRequests.cursor(request)
        let page: LeadPage
        do {
            page = try await store.listPage(tenant: principal.tenantID, limit: limit, after: cursor)
        } catch {
            throw error.functionError
        }
        // {"items":[…],"next_cursor":…}: the page's bytes as the store returned them, written once.
        var nextCursor = JSONWriter(capacity: 64)
        if let next = page.next?.encoded { nextCursor.string(next) } else { nextCursor.null() }
        var body = ByteBuffer()
        body.reserveCapacity(page.items.readableBytes + nextCursor.bytes.count + 32)
        body.writeStaticString(#"{"items":"#)
        body.writeImmutableBuffer(page.items)
        body.writeStaticString(#","next_cursor":"#)
        body.writeBytes(nextCursor.bytes)
        body.writeStaticString("}")
        return .json(body)
    }
}

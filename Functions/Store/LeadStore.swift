import FunctionRuntime

/// Why the store could not answer; the one place a database failure becomes a 503.
struct StoreUnavailable: Error, Sendable, CustomStringConvertible {
    let description: String

    var functionError: FunctionError { .serviceUnavailable("the database is unavailable; try again shortly") }
}

/// Tenant data for leads. Every method takes the tenant from the caller's token and filters on it;
/// another tenant's id is simply not found.
protocol LeadStore: Sendable {
    func list(tenant: String, limit: Int, after cursor: LeadCursor?) async throws(StoreUnavailable) -> [Lead]
    func get(tenant: String, id: String) async throws(StoreUnavailable) -> Lead?
    func create(tenant: String, lead: Lead) async throws(StoreUnavailable)
    /// Applies the change; nil when the tenant has no such lead.
    func update(tenant: String, id: String, fields: LeadFields, updatedAt: String) async throws(StoreUnavailable) -> Lead?
    /// False when the tenant has no such lead.
    func delete(tenant: String, id: String) async throws(StoreUnavailable) -> Bool
    func ping() async -> Bool
}

extension LeadStore {
    /// Every lead of the tenant, newest first, a page at a time, so an export never holds them all.
    func forEachPage(tenant: String, pageSize: Int, _ body: ([Lead]) async throws -> Void) async throws {
        var cursor: LeadCursor?
        while true {
            let page = try await list(tenant: tenant, limit: pageSize, after: cursor)
            if !page.isEmpty { try await body(page) }
            guard page.count == pageSize, let last = page.last else { return }
            cursor = LeadCursor(createdAt: last.createdAt, id: last.id)
        }
    }
}

/// Runs a database call against a deadline, so no request waits on a dead pool.
func withDeadline<T: Sendable>(
    _ deadline: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws(StoreUnavailable) -> T {
    do {
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: deadline)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw StoreUnavailable(description: "timed out")
            }
            return value
        }
    } catch let error as StoreUnavailable {
        throw error
    } catch {
        throw StoreUnavailable(description: String(describing: type(of: error)))
    }
}

import Foundation

/// Remembers when each timer last ran, so a host that starts after a missed occurrence runs it
/// once with `IsPastDue`, and lets several instances agree that only one runs an occurrence.
///
/// The runtime ships the in-memory monitor (one instance, nothing survives a restart);
/// a module with a database supplies a shared, persistent one.
public protocol ScheduleMonitor: Sendable {
    func status(of function: String) async throws -> ScheduleStatus?
    /// Whether this instance may run the occurrence; false when another instance already claimed it.
    func claim(function: String, occurrence: Date) async throws -> Bool
    func update(function: String, status: ScheduleStatus) async throws
}

public actor InMemoryScheduleMonitor: ScheduleMonitor {
    private var statuses: [String: ScheduleStatus]
    private var claimed: [String: Date] = [:]

    public init(statuses: [String: ScheduleStatus] = [:]) {
        self.statuses = statuses
    }

    public func status(of function: String) -> ScheduleStatus? {
        statuses[function]
    }

    public func claim(function: String, occurrence: Date) -> Bool {
        if let last = claimed[function], last >= occurrence { return false }
        claimed[function] = occurrence
        return true
    }

    public func update(function: String, status: ScheduleStatus) {
        statuses[function] = status
    }
}

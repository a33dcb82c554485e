import Foundation
import FunctionRuntime

/// Timer occurrences in the database (docs/runtime.md): every instance sharing it claims an occurrence
/// before running it (`timer_runs`, primary key `(function, scheduled_at)`), so exactly one runs
/// each; the schedule status lives there too, so `IsPastDue` after all instances were down is seen
/// once by whoever starts first.
protocol TimerStore: Sendable {
    /// True when this call claimed the occurrence (no instance had).
    func claimOccurrence(function: String, scheduledAt: String, owner: String) async throws(StoreUnavailable) -> Bool
    func timerStatus(function: String) async throws(StoreUnavailable) -> (last: String, next: String, lastUpdated: String)?
    func saveTimerStatus(function: String, last: String, next: String, lastUpdated: String) async throws(StoreUnavailable)
}

/// The runtime's `ScheduleMonitor` on the module's database.
struct DatabaseScheduleMonitor: ScheduleMonitor {
    let store: any TimerStore
    /// Who claimed (for the operator reading `timer_runs`).
    let owner: String

    func status(of function: String) async throws -> ScheduleStatus? {
        guard let row = try await store.timerStatus(function: function), let last = Self.date(row.last), let next = Self.date(row.next)
        else { return nil }
        return ScheduleStatus(last: last, next: next, lastUpdated: Self.date(row.lastUpdated) ?? last)
    }

    func claim(function: String, occurrence: Date) async throws -> Bool {
        try await store.claimOccurrence(function: function, scheduledAt: Self.text(occurrence), owner: owner)
    }

    func update(function: String, status: ScheduleStatus) async throws {
        try await store.saveTimerStatus(
            function: function, last: Self.text(status.last), next: Self.text(status.next), lastUpdated: Self.text(status.lastUpdated))
    }

    /// Occurrences at microsecond precision, the stores' timestamp form.
    static func text(_ date: Date) -> String {
        Timestamps.string(microseconds: Int64((date.timeIntervalSince1970 * 1_000_000).rounded()))
    }

    static func date(_ text: String) -> Date? {
        Timestamps.microseconds(text).map { Date(timeIntervalSince1970: Double($0) / 1_000_000) }
    }
}

extension PostgresDatabase: TimerStore {
    func claimOccurrence(function: String, scheduledAt: String, owner: String) async throws(StoreUnavailable) -> Bool {
        try await transaction(.noTenant) { [logger] connection in
            var claimed = false
            for try await _ in try await connection.query(
                """
                INSERT INTO timer_runs (function, scheduled_at, claimed_by) VALUES (\(function), \(scheduledAt)::timestamptz, \(owner))
                ON CONFLICT (function, scheduled_at) DO NOTHING RETURNING 1
                """, logger: logger
            ).decode(Int.self) {
                claimed = true
            }
            return claimed
        }
    }

    func timerStatus(function: String) async throws(StoreUnavailable) -> (last: String, next: String, lastUpdated: String)? {
        try await withDeadline(deadline) { [client, logger] in
            let format = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
            for try await row in try await client.query(
                """
                SELECT to_char(last_run AT TIME ZONE 'UTC', \(unescaped: format)), to_char(next_run AT TIME ZONE 'UTC', \(unescaped: format)),
                       to_char(last_updated AT TIME ZONE 'UTC', \(unescaped: format))
                FROM timer_status WHERE function = \(function)
                """, logger: logger
            ).decode((String, String, String).self) {
                return (last: row.0, next: row.1, lastUpdated: row.2)
            }
            return nil
        }
    }

    func saveTimerStatus(function: String, last: String, next: String, lastUpdated: String) async throws(StoreUnavailable) {
        _ = try await transaction(.noTenant) { [logger] connection in
            try await connection.query(
                """
                INSERT INTO timer_status (function, last_run, next_run, last_updated)
                VALUES (\(function), \(last)::timestamptz, \(next)::timestamptz, \(lastUpdated)::timestamptz)
                ON CONFLICT (function) DO UPDATE SET last_run = EXCLUDED.last_run, next_run = EXCLUDED.next_run,
                    last_updated = EXCLUDED.last_updated
                WHERE timer_status.last_run <= EXCLUDED.last_run
                """, logger: logger)
            return true
        }
    }
}

extension SQLiteDatabase: TimerStore {
    func claimOccurrence(function: String, scheduledAt: String, owner: String) async throws(StoreUnavailable) -> Bool {
        try await transaction { connection in
            !(try await connection.query(
                "INSERT INTO timer_runs (function, scheduled_at, claimed_by) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                [.text(function), .text(scheduledAt), .text(owner)])).isEmpty
        }
    }

    func timerStatus(function: String) async throws(StoreUnavailable) -> (last: String, next: String, lastUpdated: String)? {
        guard let row = try await run("SELECT last_run, next_run, last_updated FROM timer_status WHERE function = ?", [.text(function)]).first,
            let last = row.column("last_run")?.string, let next = row.column("next_run")?.string,
            let updated = row.column("last_updated")?.string
        else { return nil }
        return (last, next, updated)
    }

    func saveTimerStatus(function: String, last: String, next: String, lastUpdated: String) async throws(StoreUnavailable) {
        _ = try await transaction { connection in
            try await connection.query(
                """
                INSERT INTO timer_status (function, last_run, next_run, last_updated) VALUES (?, ?, ?, ?)
                ON CONFLICT (function) DO UPDATE SET last_run = excluded.last_run, next_run = excluded.next_run,
                    last_updated = excluded.last_updated
                WHERE timer_status.last_run <= excluded.last_run
                """, [.text(function), .text(last), .text(next), .text(lastUpdated)])
        }
    }
}

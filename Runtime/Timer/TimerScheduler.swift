import Foundation
import Logging
import ServiceLifecycle

/// Fires timer functions on their NCRONTAB schedules and runs manual invocations
/// (`POST /admin/functions/{name}`).
///
/// Graceful shutdown stops waiting for new occurrences at once and lets invocations that
/// already started finish.
public final class TimerScheduler: Service, Sendable {
    private let invoker: FunctionInvoker
    private let monitor: any ScheduleMonitor
    private let timeZone: TimeZone
    private let logger: Logger
    private let manual: AsyncStream<ManualInvocation>
    private let manualContinuation: AsyncStream<ManualInvocation>.Continuation

    struct ManualInvocation: Sendable {
        let function: FunctionCatalog.Function
    }

    public init(invoker: FunctionInvoker, monitor: any ScheduleMonitor, timeZone: TimeZone, logger: Logger) {
        self.invoker = invoker
        self.monitor = monitor
        self.timeZone = timeZone
        self.logger = logger
        (manual, manualContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1024))
    }

    /// Queues a run of a timer function now (not past due). Returns false for an unknown or non-timer function.
    public func invokeNow(_ name: String) -> Bool {
        guard let function = invoker.catalog.function(named: name), function.spec.timerTrigger != nil else {
            return false
        }
        if case .dropped = manualContinuation.yield(ManualInvocation(function: function)) { return false }
        return true
    }

    /// The next occurrence of a timer function, for listings.
    public func nextOccurrence(of function: FunctionCatalog.Function, after date: Date = Date()) -> Date? {
        guard let timer = function.spec.timerTrigger, !function.spec.disabled else { return nil }
        return timer.schedule.next(after: date, in: timeZone)
    }

    public func run() async throws {
        let timers = invoker.catalog.functions.filter { $0.spec.timerTrigger != nil && !$0.spec.disabled }
        await withDiscardingTaskGroup { group in
            for function in timers {
                group.addTask { await self.runSchedule(of: function) }
            }
            for await request in manual.cancelOnGracefulShutdown() {
                group.addTask {
                    let status = try? await self.monitor.status(of: request.function.name)
                    await self.invoker.invokeTimer(
                        request.function, timer: TimerInfo(isPastDue: false, scheduleStatus: status),
                        reason: "This function was programmatically called via the host APIs.")
                }
            }
        }
    }

    private func runSchedule(of function: FunctionCatalog.Function) async {
        guard let timer = function.spec.timerTrigger else { return }
        let schedule = timer.schedule
        // Azure keeps no schedule status for sub-minute schedules.
        let monitored = timer.useMonitor && schedule.seconds.nonzeroBitCount == 1
        var lastOccurrence = Date()

        if monitored, let status = try? await monitor.status(of: function.name), status.next < lastOccurrence {
            if (try? await monitor.claim(function: function.name, occurrence: status.next)) == true {
                await fire(function, occurrence: status.next, isPastDue: true, monitored: monitored, previous: status)
            }
        } else if timer.runOnStartup {
            let previous = monitored ? try? await monitor.status(of: function.name) : nil
            await invoker.invokeTimer(
                function, timer: TimerInfo(isPastDue: false, scheduleStatus: previous), reason: "Timer fired at startup")
        }

        while !Task.isShuttingDownGracefully {
            let now = Date()
            guard let next = schedule.next(after: max(now, lastOccurrence), in: timeZone) else {
                logger.warning("schedule never fires again", metadata: ["function": .string(function.name)])
                return
            }
            guard await sleep(until: next) else { return }
            lastOccurrence = next
            // Fail closed: an occurrence that cannot be claimed is skipped (another instance may run it);
            // a duplicate run would break "one run per occurrence" (docs/runtime.md).
            let claimed: Bool
            do {
                claimed = try await monitor.claim(function: function.name, occurrence: next)
            } catch {
                logger.warning(
                    "could not claim the timer occurrence; skipped",
                    metadata: ["function": .string(function.name), "error": .string(String(describing: error))])
                continue
            }
            guard claimed else { continue }
            let previous = monitored ? try? await monitor.status(of: function.name) : nil
            let lateness = Date().timeIntervalSince(next)
            await fire(function, occurrence: next, isPastDue: lateness > 1, monitored: monitored, previous: previous)
        }
    }

    private func fire(
        _ function: FunctionCatalog.Function, occurrence: Date, isPastDue: Bool, monitored: Bool, previous: ScheduleStatus?
    ) async {
        guard let schedule = function.spec.timerTrigger?.schedule else { return }
        let following = schedule.next(after: max(occurrence, Date()), in: timeZone) ?? occurrence
        let status = monitored
            ? ScheduleStatus(last: previous?.last ?? occurrence, next: following, lastUpdated: previous?.lastUpdated ?? Date())
            : nil
        await invoker.invokeTimer(
            function, timer: TimerInfo(isPastDue: isPastDue, scheduleStatus: status),
            reason: "Timer fired at \(Timestamp.format(date: occurrence))")
        if monitored {
            try? await monitor.update(
                function: function.name, status: ScheduleStatus(last: occurrence, next: following, lastUpdated: Date()))
        }
    }

    /// Sleeps until the wall-clock time `date`, in steps of at most a minute so clock changes are noticed.
    /// Returns false when graceful shutdown began.
    private func sleep(until date: Date) async -> Bool {
        while true {
            let remaining = date.timeIntervalSinceNow
            if remaining <= 0 { return !Task.isShuttingDownGracefully }
            let step = min(remaining, 60)
            do {
                try await cancelWhenGracefulShutdown {
                    try await Task.sleep(for: .milliseconds(Int64((step * 1000).rounded(.up))))
                }
            } catch {
                return false
            }
            if Task.isShuttingDownGracefully { return false }
        }
    }
}

extension Timestamp {
    /// `2026-11-22T08:15:30.123456Z`.
    static func format(date: Date) -> String {
        let interval = date.timeIntervalSince1970
        let seconds = Int64(interval.rounded(.down))
        let micro = Int(((interval - Double(seconds)) * 1_000_000).rounded(.down))
        return format(seconds: seconds, nanoseconds: micro * 1000, fractionDigits: 6)
    }
}

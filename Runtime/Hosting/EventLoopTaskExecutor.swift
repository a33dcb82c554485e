import NIOCore
import NIOPosix

/// An event loop as a Swift `TaskExecutor`: `HTTPFront` runs each request under the preference of
/// its connection's loop, so the request's work stays on that thread without hopping.
///
/// Why it matters: with Swift concurrency on NIO's event loops (`fnhost` installs them as the global
/// executor), every job runs "on" the loop's serial executor, so each entry into a nonisolated async
/// function — a row of a query, a cache lookup — is a switch to the generic executor: the task is
/// enqueued on the loop again and resumed on a later tick. Under a task executor preference the
/// task runs as generic work with this preference, and those calls run inline. (Preferring the loops
/// for all of the process's work, the HTTP server's own loop included, measured slower: `/health`
/// 55 → 83 µs of CPU per request; docs/benchmarks.md.)
public final class EventLoopTaskExecutor: TaskExecutor {
    public let loop: any EventLoop

    init(loop: any EventLoop) {
        self.loop = loop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    private static let singletons: [EventLoopTaskExecutor] =
        MultiThreadedEventLoopGroup.singleton.makeIterator().map { EventLoopTaskExecutor(loop: $0) }

    /// The executor of `loop` (one per loop of NIO's singleton group; a new one for other loops).
    public static func of(_ loop: any EventLoop) -> EventLoopTaskExecutor {
        for executor in singletons where executor.loop === loop { return executor }
        return EventLoopTaskExecutor(loop: loop)
    }

    /// The executor of the singleton loop the caller runs on, if it runs on one (for a task started
    /// from a request, so it keeps the request's loop).
    public static var current: EventLoopTaskExecutor? {
        for executor in singletons where executor.loop.inEventLoop { return executor }
        return nil
    }
}

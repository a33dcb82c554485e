import FunctionRuntime
import NIOCore
import NIOPosix
import Synchronization

/// A caller waiting in a `BatchQueue`: finished once it has its answer (its batch's, or its deadline's).
protocol BatchWaiter: Sendable {
    var isFinished: Bool { get }
}

/// What `PageBatches` and `CreateBatches` share: callers of one event loop wait here; while fewer than
/// `inFlight` batches run, a caller starts a batch loop, and each batch takes every caller still waiting
/// (at most `maxBatch`) — so under load the per-call costs are paid once per batch, and at low load a
/// batch is one caller. Each caller keeps its own deadline: a timer on the loop answers 503 when it
/// passes, and a finished caller is left out of the next batch.
final class BatchQueue<Waiter: BatchWaiter>: Sendable {
    private struct State {
        var waiting: [Waiter] = []
        var running = 0
    }

    /// The event loop whose requests the queue serves (its batches run there); nil for a client the
    /// caller runs itself (tests, command-line runs).
    let loop: (any EventLoop)?
    private let inFlight: Int
    private let maxBatch: Int
    private let state = Mutex(State())
    private let largest = Atomic<Int>(0)

    init(loop: (any EventLoop)?, inFlight: Int = 1, maxBatch: Int) {
        self.loop = loop
        self.inFlight = max(1, inFlight)
        self.maxBatch = max(1, maxBatch)
    }

    /// The most callers one batch has taken so far (tests, and docs/benchmarks.md's measurements).
    var largestBatch: Int { largest.load(ordering: .relaxed) }

    /// Where a batch loop runs: on the queue's loop (else the caller's).
    var executor: EventLoopTaskExecutor? { loop.map { EventLoopTaskExecutor.of($0) } ?? EventLoopTaskExecutor.current }

    /// Queues the waiter `make` builds around the caller's outcome and waits for that outcome, or for
    /// 503 at `deadline` when `expire()` agrees (a create already sent is the database's to decide).
    /// `startLoop` is called when the caller must start a batch loop: a task that takes batches with
    /// `next()` until it returns nil.
    func wait<T: Sendable>(
        deadline: Duration, expire: @escaping @Sendable () -> Bool = { true }, _ make: (DeadlineOutcome<T>) -> Waiter,
        startLoop: () -> Void
    ) async -> Result<T, StoreUnavailable> {
        let outcome = DeadlineOutcome<T>()
        return await withCheckedContinuation { continuation in
            outcome.install(continuation)
            let timerLoop = loop ?? MultiThreadedEventLoopGroup.singleton.any()
            let timer = timerLoop.scheduleTask(in: .nanoseconds(deadline.nanosecondsClamped)) {
                if expire() { outcome.finish(.failure(StoreUnavailable(description: "timed out"))) }
            }
            outcome.onFinish { timer.cancel() }
            let waiter = make(outcome)
            let start = state.withLock { state -> Bool in
                state.waiting.append(waiter)
                guard state.running < inFlight else { return false }
                state.running += 1
                return true
            }
            if start { startLoop() }
        }
    }

    /// The next batch: every caller still waiting, at most `maxBatch`; nil (and the loop ends) when
    /// nothing waits.
    func next() -> [Waiter]? {
        let batch = state.withLock { state -> [Waiter]? in
            state.waiting.removeAll { $0.isFinished }
            guard !state.waiting.isEmpty else {
                state.running -= 1
                return nil
            }
            let count = min(state.waiting.count, maxBatch)
            let batch = Array(state.waiting.prefix(count))
            state.waiting.removeFirst(count)
            return batch
        }
        if let batch { largest.max(batch.count, ordering: .relaxed) }
        return batch
    }
}

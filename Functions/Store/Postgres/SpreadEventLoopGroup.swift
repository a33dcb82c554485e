import Dispatch
import NIOCore
import NIOPosix

/// An event loop group whose `any()` is `next()`.
///
/// postgres-nio opens each pooled connection on `group.any()`, which from inside an event loop
/// returns that same loop: every connection (and, with Swift concurrency on NIO, every task that
/// resumes after a query) ends up on one thread. Round-robin spreads them over all loops.
final class SpreadEventLoopGroup: EventLoopGroup {
    let base: MultiThreadedEventLoopGroup

    init(base: MultiThreadedEventLoopGroup) {
        self.base = base
    }

    func next() -> any EventLoop { base.next() }

    func any() -> any EventLoop { base.next() }

    func makeIterator() -> EventLoopIterator { base.makeIterator() }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable ((any Error)?) -> Void) {
        // The singleton group outlives every client; there is nothing to shut down.
        queue.async { callback(nil) }
    }
}

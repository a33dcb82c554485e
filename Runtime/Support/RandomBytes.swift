#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Random bytes from the kernel's generator, drawn 4 KiB at a time: a request's ids (its request id,
/// trace id and span id) were five `getrandom(2)` calls per request through
/// `SystemRandomNumberGenerator`, ~1 % of the listing's CPU. The buffer is handed out once, never
/// reused; the process never forks without exec.
enum RandomBytes {
    private final class Pool: Sendable {
        struct State {
            var bytes = [UInt8](repeating: 0, count: RandomBytes.poolSize)
            var offset = RandomBytes.poolSize
        }
        let state = Mutex(State())
    }

    static let poolSize = 4096
    private static let pool = Pool()

    /// `count` fresh random bytes (clamped to 0…4096).
    static func take(_ count: Int) -> [UInt8] {
        let count = min(max(count, 0), poolSize)
        return pool.state.withLock { state in
            if state.offset + count > poolSize {
                refill(&state.bytes)
                state.offset = 0
            }
            let taken = Array(state.bytes[state.offset..<(state.offset + count)])
            state.offset += count
            return taken
        }
    }

    /// Fills `bytes` from the kernel's generator in one call (`arc4random_buf`: `getrandom(2)`, which does not fail).
    static func refill(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            arc4random_buf(base, buffer.count)
        }
    }
}

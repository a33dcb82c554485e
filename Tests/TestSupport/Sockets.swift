import Foundation

/// Loopback ports.
public enum FreePort {
    /// A loopback port that was free a moment ago (nothing listens on it: connections are refused).
    public static func pick() throws -> Int {
        let (descriptor, port) = try bindLoopback(listening: false)
        close(descriptor)
        return port
    }

    /// A TCP socket bound to 127.0.0.1 on a port the kernel picks (listening when asked), and that port.
    static func bindLoopback(listening: Bool) throws -> (descriptor: Int32, port: Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && (!listening || listen(descriptor, 64) == 0) && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard ok else {
            close(descriptor)
            throw TestSupportError(listening ? "cannot listen on loopback" : "cannot bind on loopback")
        }
        return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A connection to 127.0.0.1:`port` is refused right now (nothing listens there).
    public static func refuses(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(clamping: port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return connected != 0 && errno == ECONNREFUSED
    }
}

/// A TCP listener that never accepts: connects succeed (the backlog), nothing is ever answered —
/// a host that hangs past every deadline.
public final class SilentListener: Sendable {
    public let port: Int
    private let descriptor: Int32

    public init() throws {
        (descriptor, port) = try FreePort.bindLoopback(listening: true)
    }

    public func close() {
        Glibc.close(descriptor)
    }
}

/// A loopback port held bound but never listening: connections to it are refused, and no other
/// server of the run can take the port while this holds it (a port that was merely free a moment
/// ago may be handed to the next listener that binds port 0).
public final class RefusingPort: Sendable {
    public let port: Int
    private let descriptor: Int32

    public init() throws {
        (descriptor, port) = try FreePort.bindLoopback(listening: false)
    }

    public func close() {
        Glibc.close(descriptor)
    }
}

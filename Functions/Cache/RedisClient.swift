import CHiredis
import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A Redis reply.
enum RedisValue: Sendable, Equatable {
    case string([UInt8])
    case integer(Int64)
    case array([RedisValue])
    case null
    case status(String)
    case error(String)

    var bytes: [UInt8]? {
        if case .string(let bytes) = self { return bytes }
        return nil
    }

    var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }
}

enum RedisError: Error, Sendable, CustomStringConvertible {
    /// Could not connect, timed out, or the connection broke; the caller treats Redis as down.
    case unavailable(String)
    /// Redis answered with an error reply (a bug on our side, e.g. a wrong type).
    case reply(String)

    var description: String {
        switch self {
        case .unavailable(let reason): "redis unavailable: \(reason)"
        case .reply(let message): "redis error: \(message)"
        }
    }
}

/// `redis://[:password@]host[:port][/db]`.
struct RedisEndpoint: Sendable, Equatable {
    var host: String
    var port: Int
    var database: Int
    var password: String?

    init(url text: String) throws(RedisError) {
        guard let url = URL(string: text), url.scheme == "redis", let host = url.host, !host.isEmpty else {
            throw .unavailable("REDIS_URL must look like redis://HOST:PORT[/DB]")
        }
        self.host = host
        port = url.port ?? 6379
        let path = url.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard path.isEmpty || Int(path) != nil else { throw .unavailable("REDIS_URL database must be a number") }
        database = Int(path) ?? 0
        password = url.password
    }
}

/// One hiredis connection. Blocking, so it is only ever used on the client's own thread pool,
/// by one thread at a time (checked out of the idle list), never on an event loop.
final class RedisConnection: @unchecked Sendable {
    private let context: UnsafeMutablePointer<redisContext>

    init(endpoint: RedisEndpoint, connectTimeout: Duration, commandTimeout: Duration) throws(RedisError) {
        guard let context = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), Self.timeval(connectTimeout)) else {
            throw .unavailable("cannot allocate a connection")
        }
        guard context.pointee.err == 0 else {
            let reason = Self.errorText(context)
            redisFree(context)
            throw .unavailable(reason)
        }
        redisSetTimeout(context, Self.timeval(commandTimeout))
        redisEnableKeepAlive(context)
        self.context = context
        if let password = endpoint.password {
            let reply = try command([Array("AUTH".utf8), Array(password.utf8)])
            if case .error = reply { throw .unavailable("authentication failed") }
        }
        if endpoint.database != 0 {
            let reply = try command([Array("SELECT".utf8), Array(String(endpoint.database).utf8)])
            if case .error(let message) = reply { throw .unavailable(message) }
        }
    }

    deinit {
        redisFree(context)
    }

    /// Sends one command and waits for its reply. A transport error leaves the connection unusable.
    func command(_ arguments: [[UInt8]]) throws(RedisError) -> RedisValue {
        try send(arguments)
        return try readReply()
    }

    func send(_ arguments: [[UInt8]]) throws(RedisError) {
        let pointers = arguments.map { argument -> UnsafeMutablePointer<CChar> in
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: max(argument.count, 1))
            argument.withUnsafeBytes { raw in
                if let base = raw.baseAddress { UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: raw.count) }
            }
            return pointer
        }
        defer { pointers.forEach { $0.deallocate() } }
        var argv = pointers.map { UnsafePointer<CChar>?($0) }
        var lengths = arguments.map(\.count)
        let status = redisAppendCommandArgv(context, Int32(arguments.count), &argv, &lengths)
        guard status == REDIS_OK else { throw .unavailable(Self.errorText(context)) }
    }

    func readReply() throws(RedisError) -> RedisValue {
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
            throw .unavailable(Self.errorText(context))
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return Self.convert(reply)
    }

    /// Stops a blocked read from another thread (used to stop a subscriber).
    func interrupt() {
        shutdown(context.pointee.fd, Int32(SHUT_RDWR))
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .string(bytes(value.str, count: value.len))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            var elements: [RedisValue] = []
            elements.reserveCapacity(Int(value.elements))
            for index in 0..<Int(value.elements) {
                if let element = value.element?[index] { elements.append(convert(element)) } else { elements.append(.null) }
            }
            return .array(elements)
        default:
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, count: Int) -> [UInt8] {
        guard let pointer, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return bytes.isEmpty ? "connection error" : String(decoding: bytes, as: UTF8.self)
        }
    }

    private static func timeval(_ duration: Duration) -> Foundation.timeval {
        let micro = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        return Foundation.timeval(tv_sec: Int(micro / 1_000_000), tv_usec: Int(micro % 1_000_000))
    }
}

/// A pooled Redis client: hiredis connections on a dedicated thread pool (never an event loop),
/// connect and command timeouts, reconnect on demand, and a short circuit breaker so a dead
/// Redis costs one failed attempt per second rather than one per request.
final class RedisClient: Service, Sendable {
    let endpoint: RedisEndpoint
    private let threads: NIOThreadPool
    private let idle = Mutex<[RedisConnection]>([])
    private let downUntil = Mutex<ContinuousClock.Instant?>(nil)
    private let connectTimeout: Duration
    private let commandTimeout: Duration
    private let breakerInterval: Duration
    private let maxIdle: Int

    init(
        endpoint: RedisEndpoint, threads: Int = 4, connectTimeout: Duration = .milliseconds(500),
        commandTimeout: Duration = .milliseconds(500), breakerInterval: Duration = .seconds(1)
    ) {
        self.endpoint = endpoint
        self.threads = NIOThreadPool(numberOfThreads: threads)
        self.threads.start()
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.breakerInterval = breakerInterval
        maxIdle = threads
    }

    func run() async throws {
        try? await gracefulShutdown()
        idle.withLock { $0.removeAll() }
        try await threads.shutdownGracefully()
    }

    /// Runs one command; throws `.unavailable` quickly while Redis is known to be down.
    func command(_ arguments: [String]) async throws(RedisError) -> RedisValue {
        try await command(arguments.map { Array($0.utf8) })
    }

    func command(_ arguments: [[UInt8]]) async throws(RedisError) -> RedisValue {
        let reply = try await withConnection { connection throws(RedisError) in try connection.command(arguments) }
        if case .error(let message) = reply { throw .reply(message) }
        return reply
    }

    /// Sends several commands in one round trip (pipelining); replies in order, errors included.
    func pipeline(_ commands: [[[UInt8]]]) async throws(RedisError) -> [RedisValue] {
        try await withConnection { connection throws(RedisError) in
            for arguments in commands { try connection.send(arguments) }
            var replies: [RedisValue] = []
            for _ in commands { replies.append(try connection.readReply()) }
            return replies
        }
    }

    private func withConnection<T: Sendable>(
        _ body: @escaping @Sendable (RedisConnection) throws(RedisError) -> T
    ) async throws(RedisError) -> T {
        if let until = downUntil.withLock({ $0 }), ContinuousClock.now < until {
            throw .unavailable("recently failed; retrying shortly")
        }
        let result: Result<T, RedisError>
        do {
            result = try await threads.runIfActive { [self] () -> Result<T, RedisError> in
                let connection: RedisConnection
                if let pooled = idle.withLock({ $0.popLast() }) {
                    connection = pooled
                } else {
                    switch Result(catching: { () throws(RedisError) -> RedisConnection in
                        try RedisConnection(endpoint: endpoint, connectTimeout: connectTimeout, commandTimeout: commandTimeout)
                    }) {
                    case .success(let fresh): connection = fresh
                    case .failure(let error): return .failure(error)
                    }
                }
                let outcome = Result(catching: { () throws(RedisError) -> T in try body(connection) })
                // A connection that failed is dropped (freed); the next call reconnects.
                if case .success = outcome {
                    idle.withLock { list in if list.count < maxIdle { list.append(connection) } }
                }
                return outcome
            }
        } catch {
            throw .unavailable("client is shut down")
        }
        switch result {
        case .success(let value):
            downUntil.withLock { $0 = nil }
            return value
        case .failure(let error):
            if case .unavailable = error {
                downUntil.withLock { $0 = ContinuousClock.now + breakerInterval }
            }
            throw error
        }
    }

    /// Subscribes to `channel` on a dedicated connection and calls `handler` for every message
    /// until graceful shutdown; reconnects after a failure. `onSubscribed` runs each time the
    /// subscription is (re)established, so a listener can catch up on what it may have missed.
    func subscribe(
        channel: String, logger: Logger, onSubscribed: @escaping @Sendable () -> Void = {},
        handler: @escaping @Sendable (String) -> Void
    ) -> some Service {
        RedisSubscriber(endpoint: endpoint, channel: channel, logger: logger, onSubscribed: onSubscribed, handler: handler)
    }
}

/// Blocking SUBSCRIBE loop on its own thread; stopped by shutting the socket down.
private struct RedisSubscriber: Service {
    let endpoint: RedisEndpoint
    let channel: String
    let logger: Logger
    let onSubscribed: @Sendable () -> Void
    let handler: @Sendable (String) -> Void

    func run() async throws {
        let current = Mutex<RedisConnection?>(nil)
        let stopping = Atomic<Bool>(false)
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        await withGracefulShutdownHandler {
            while !stopping.load(ordering: .relaxed) {
                let outcome: Result<Void, RedisError>? = try? await thread.runIfActive { [endpoint, channel, onSubscribed, handler] in
                    Result { () throws(RedisError) -> Void in
                        let connection = try RedisConnection(
                            endpoint: endpoint, connectTimeout: .seconds(1), commandTimeout: .seconds(0))
                        current.withLock { $0 = connection }
                        defer { current.withLock { $0 = nil } }
                        if stopping.load(ordering: .relaxed) { return }
                        _ = try connection.command([Array("SUBSCRIBE".utf8), Array(channel.utf8)])
                        onSubscribed()
                        while !stopping.load(ordering: .relaxed) {
                            let message = try connection.readReply()
                            if case .array(let parts) = message, parts.count == 3, parts[0].bytes == Array("message".utf8),
                                let payload = parts[2].bytes
                            {
                                handler(String(decoding: payload, as: UTF8.self))
                            }
                        }
                    }
                }
                if case .failure(let error)? = outcome, !stopping.load(ordering: .relaxed) {
                    logger.warning("redis subscription lost; reconnecting", metadata: ["reason": .string(error.description)])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        } onGracefulShutdown: {
            stopping.store(true, ordering: .relaxed)
            current.withLock { $0?.interrupt() }
        }
        try? await thread.shutdownGracefully()
    }
}

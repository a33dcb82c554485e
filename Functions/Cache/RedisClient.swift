import Foundation
import FunctionRuntime
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

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

/// `redis://` or `rediss://` (TLS) `[USER:PASSWORD@]HOST[:PORT][/DB]` (docs/settings.md). TLS always
/// verifies the certificate chain (against `caFile`, `TLS_CA_FILE`, else the system trust store)
/// and the host name (or the IP address when the host is one).
struct RedisEndpoint: Sendable, Equatable {
    var host: String
    var port: Int
    var database: Int
    /// The ACL user name (`AUTH username password`).
    var username: String?
    var password: String?
    var tls: Bool
    var caFile: String?

    init(url text: String, caFile: String? = nil) throws(RedisError) {
        let shape = "REDIS_URL must look like redis://[USER:PASSWORD@]HOST:PORT[/DB] or rediss://… for TLS"
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "redis" || scheme == "rediss", let host = components.host, !host.isEmpty
        else { throw .unavailable(shape) }
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard (components.port ?? 6379) >= 1, (components.port ?? 6379) <= 65535 else { throw .unavailable("REDIS_URL port must be 1…65535") }
        port = components.port ?? 6379
        let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard path.isEmpty || (path.utf8.count <= 6 && Int(path).map { $0 >= 0 } == true) else {
            throw .unavailable("REDIS_URL database must be a number")
        }
        database = Int(path) ?? 0
        // `redis://:PASSWORD@host` authenticates the default user; `USER:PASSWORD@` an ACL user.
        password = components.password.flatMap { $0.isEmpty ? nil : $0 }
        username = password == nil ? nil : components.user.flatMap { $0.isEmpty ? nil : $0 }
        tls = scheme == "rediss"
        self.caFile = caFile
    }

    /// Host name for SNI and verification; nil for an IP address (verified against the IP SANs).
    var serverHostname: String? {
        (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }
}

/// A Redis client on SwiftNIO, non-blocking: one multiplexed connection per event loop (every
/// command is one write of its RESP bytes; replies are matched in order, so concurrent callers
/// pipeline on one connection), TLS through swift-nio-ssl, `AUTH [user] password` and `SELECT`
/// on connect, a deadline on every call (a call past it closes its connection, since the replies
/// behind it would be out of step), reconnect on demand, and a short circuit breaker so a dead
/// Redis costs one failed attempt per second rather than one per request.
final class RedisClient: Service, Sendable {
    let endpoint: RedisEndpoint
    private let loops: [any EventLoop]
    private let slots: [ConnectionSlot]
    private let nextSlot = Atomic<Int>(0)
    private let tlsContext: Result<NIOSSLContext, RedisError>?
    private let downUntil = Mutex<ContinuousClock.Instant?>(nil)
    private let connectTimeout: Duration
    private let commandTimeout: Duration
    private let breakerInterval: Duration
    private let closed = Atomic<Bool>(false)

    init(
        endpoint: RedisEndpoint, connectTimeout: Duration = .milliseconds(500), commandTimeout: Duration = .milliseconds(500),
        breakerInterval: Duration = .seconds(1), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.endpoint = endpoint
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.breakerInterval = breakerInterval
        let loops = Array(group.makeIterator().prefix(8))
        self.loops = loops.isEmpty ? [group.next()] : loops
        slots = self.loops.map { _ in ConnectionSlot() }
        if endpoint.tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .fullVerification
            configuration.minimumTLSVersion = .tlsv12
            if let caFile = endpoint.caFile { configuration.trustRoots = .file(caFile) }
            do {
                tlsContext = .success(try NIOSSLContext(configuration: configuration))
            } catch {
                tlsContext = .failure(.unavailable("TLS configuration: \(error)"))
            }
        } else {
            tlsContext = nil
        }
    }

    func run() async throws {
        try? await gracefulShutdown()
        closed.store(true, ordering: .relaxed)
        for slot in slots { slot.close() }
    }

    /// Runs one command; throws `.unavailable` quickly while Redis is known to be down.
    func command(_ arguments: [String]) async throws(RedisError) -> RedisValue {
        try await command(arguments.map { Array($0.utf8) })
    }

    func command(_ arguments: [[UInt8]]) async throws(RedisError) -> RedisValue {
        let replies = try await pipeline([arguments])
        guard let reply = replies.first else { throw .unavailable("no reply") }
        if case .error(let message) = reply { throw .reply(message) }
        return reply
    }

    /// Sends several commands in one write (pipelining); replies in order, errors included.
    func pipeline(_ commands: [[[UInt8]]]) async throws(RedisError) -> [RedisValue] {
        if let until = downUntil.withLock({ $0 }), ContinuousClock.now < until {
            throw .unavailable("recently failed; retrying shortly")
        }
        let span = Tracing.start(
            "redis " + (commands.first?.first.map { String(decoding: $0, as: UTF8.self) } ?? ""),
            attributes: [("db.system", .string("redis")), ("db.redis.commands", .int(Int64(commands.count)))])
        do {
            let connection = try await connection()
            let replies = try await connection.send(commands, timeout: commandTimeout)
            downUntil.withLock { $0 = nil }
            span?.end()
            return replies
        } catch {
            if case .unavailable = error {
                downUntil.withLock { $0 = ContinuousClock.now + breakerInterval }
            }
            span?.end(failed: true)
            throw error
        }
    }

    /// The connection of the caller's event loop when it runs on one, else the next in turn.
    private func connection() async throws(RedisError) -> RedisConnection {
        guard !closed.load(ordering: .relaxed) else { throw .unavailable("client is shut down") }
        var index = 0
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, let found = loops.firstIndex(where: { $0 === current }) {
            index = found
        } else {
            index = Int(UInt(bitPattern: nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue) % UInt(slots.count))
        }
        let loop = loops[index]
        return try await slots[index].connection { [self] () async throws(RedisError) -> RedisConnection in
            try await connect(on: loop, push: nil)
        }
    }

    /// A new connection on `loop`: TCP (and TLS), then AUTH/SELECT/PING in one round trip.
    /// `push` receives replies nobody waits for (pub/sub messages).
    func connect(on loop: any EventLoop, push: (@Sendable (RedisValue) -> Void)?) async throws(RedisError) -> RedisConnection {
        let tls: NIOSSLContext?
        switch tlsContext {
        case nil: tls = nil
        case .success(let context)?: tls = context
        case .failure(let error)?: throw error
        }
        let endpoint = endpoint
        let milliseconds = Int64(connectTimeout.components.seconds * 1000 + connectTimeout.components.attoseconds / 1_000_000_000_000_000)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.milliseconds(max(1, milliseconds)))
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tls, serverHostname: endpoint.serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                    try channel.pipeline.syncOperations.addHandler(RedisReplyHandler(push: push))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            throw .unavailable("cannot connect to \(endpoint.host):\(endpoint.port): \(error)")
        }
        let connection = RedisConnection(channel: channel)
        var hello: [[[UInt8]]] = []
        if let password = endpoint.password {
            hello.append([Array("AUTH".utf8)] + (endpoint.username.map { [Array($0.utf8)] } ?? []) + [Array(password.utf8)])
        }
        if endpoint.database != 0 { hello.append([Array("SELECT".utf8), Array(String(endpoint.database).utf8)]) }
        hello.append([Array("PING".utf8)])
        let replies: [RedisValue]
        do {
            // The TLS handshake (and its verification) happens before these bytes leave.
            replies = try await connection.send(hello, timeout: max(commandTimeout, connectTimeout) * 2)
        } catch {
            connection.close()
            throw error
        }
        for (index, reply) in replies.enumerated() {
            guard case .error(let message) = reply else { continue }
            connection.close()
            // Never the password; Redis' own message names no secret.
            let isAuth = endpoint.password != nil && index == 0
            throw .unavailable(isAuth ? "authentication failed (\(message.prefix(80)))" : "connection setup failed: \(message.prefix(80))")
        }
        return connection
    }

    /// Subscribes to `channel` on a dedicated connection and calls `handler` for every message
    /// until graceful shutdown; reconnects after a failure with backoff. `onSubscribed` runs each
    /// time the subscription is (re)established, so a listener can catch up on what it missed.
    func subscribe(
        channel: String, logger: Logger, onSubscribed: @escaping @Sendable () -> Void = {},
        handler: @escaping @Sendable (String) -> Void
    ) -> some Service {
        RedisSubscriber(client: self, channel: channel, logger: logger, onSubscribed: onSubscribed, handler: handler)
    }

    var anyLoop: any EventLoop { loops[0] }
}

/// One connection: commands go out as one write, replies come back in order.
final class RedisConnection: Sendable {
    let channel: any Channel

    init(channel: any Channel) {
        self.channel = channel
    }

    var isActive: Bool { channel.isActive }

    func close() {
        channel.close(promise: nil)
    }

    /// One hop onto the connection's event loop per call: the promises, the deadline timer, the
    /// write and the continuation's resumption are all set up inside a single `execute`, so a call
    /// costs one cross-thread wake-up there and one back (a timer or a `get()` from outside would
    /// each add one).
    func send(_ commands: [[[UInt8]]], timeout: Duration) async throws(RedisError) -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        let loop = channel.eventLoop
        let channel = channel
        var bytes: [UInt8] = []
        for command in commands { RESP.encode(command, into: &bytes) }
        let payload = ByteBuffer(bytes: bytes)
        let count = commands.count
        let nanoseconds = max(1, timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        do {
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[RedisValue], any Error>) in
                loop.execute {
                    // Every promise is completed whatever happens: by its reply, by the handler when the
                    // connection fails, by the write failing (a connection already torn down never
                    // reaches the handler), or at the deadline (completing twice does nothing).
                    let promises = (0..<count).map { _ in loop.makePromise(of: RedisValue.self) }
                    let timer = loop.scheduleTask(in: .nanoseconds(nanoseconds)) {
                        for promise in promises { promise.fail(RedisError.unavailable("timed out")) }
                        channel.triggerUserOutboundEvent(RedisTimedOut(), promise: nil)
                    }
                    let written = loop.makePromise(of: Void.self)
                    written.futureResult.whenFailure { error in
                        // A tick later, so the handler's own reason (a TLS failure, say) is the one reported.
                        loop.execute {
                            for promise in promises { promise.fail(RedisError.unavailable("not sent: \(RedisReplyHandler.describe(error))")) }
                        }
                    }
                    EventLoopFuture.whenAllSucceed(promises.map(\.futureResult), on: loop).whenComplete { result in
                        timer.cancel()
                        continuation.resume(with: result)
                    }
                    channel.writeAndFlush(RedisOutbound(payload: payload, promises: promises), promise: written)
                }
            }
        } catch {
            throw (error as? RedisError) ?? .unavailable("\(error)")
        }
    }
}

/// Holds one connection (or the attempt to make it) for concurrent callers.
final class ConnectionSlot: Sendable {
    private enum State {
        case empty
        case connecting(EventLoopFuture<RedisConnection>)
        case ready(RedisConnection)
    }

    private enum Step {
        case use(RedisConnection)
        case wait(EventLoopFuture<RedisConnection>)
        case start(EventLoopPromise<RedisConnection>)
    }

    private let state = Mutex<State>(.empty)

    func connection(
        _ connect: @Sendable () async throws(RedisError) -> RedisConnection
    ) async throws(RedisError) -> RedisConnection {
        let step = state.withLock { state -> Step in
            switch state {
            case .ready(let connection) where connection.isActive: return .use(connection)
            case .connecting(let future): return .wait(future)
            case .ready, .empty:
                let promise = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: RedisConnection.self)
                state = .connecting(promise.futureResult)
                return .start(promise)
            }
        }
        switch step {
        case .use(let connection):
            return connection
        case .wait(let future):
            do {
                return try await future.get()
            } catch {
                throw (error as? RedisError) ?? .unavailable("\(error)")
            }
        case .start(let promise):
            do {
                let connection = try await connect()
                state.withLock { $0 = .ready(connection) }
                promise.succeed(connection)
                return connection
            } catch {
                state.withLock { $0 = .empty }
                promise.fail(error)
                throw error
            }
        }
    }

    func close() {
        let current = state.withLock { state -> RedisConnection? in
            defer { state = .empty }
            if case .ready(let connection) = state { return connection }
            return nil
        }
        current?.close()
    }
}

struct RedisOutbound: Sendable {
    let payload: ByteBuffer
    let promises: [EventLoopPromise<RedisValue>]
}

/// Sent by a command's deadline: fail every waiting command and close the connection.
struct RedisTimedOut: Sendable {}

/// Parses replies off the wire (RESP2, bounded by `RESP.Limits`), keeping its place across reads:
/// the bytes the parser has taken leave the buffer, so a large reply is read once, not once per read.
/// A reply over a bound throws `RESP.ProtocolError`: the handler fails every waiting call and closes
/// the connection.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RedisValue

    private var parser: RESP.Parser

    init(limits: RESP.Limits = .standard) {
        parser = RESP.Parser(limits: limits)
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let step = try buffer.withUnsafeReadableBytes { bytes throws(RESP.ProtocolError) in try parser.consume(bytes) }
        buffer.moveReaderIndex(forwardBy: step.consumed)
        guard let value = step.value else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Matches replies to the commands written, in order; a reply nobody waits for goes to `push`
/// (pub/sub) or, without one, means the stream is out of step: the connection is closed.
final class RedisReplyHandler: ChannelDuplexHandler {
    typealias InboundIn = RedisValue
    typealias OutboundIn = RedisOutbound
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<RedisValue>>()
    private let push: (@Sendable (RedisValue) -> Void)?
    /// The first error seen: what callers are told when the connection then closes.
    private var failure: String?

    init(push: (@Sendable (RedisValue) -> Void)?) {
        self.push = push
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outbound = unwrapOutboundIn(data)
        guard context.channel.isActive else {
            for waiter in outbound.promises { waiter.fail(RedisError.unavailable("connection closed")) }
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        waiting.append(contentsOf: outbound.promises)
        context.write(wrapOutboundOut(outbound.payload), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        if let waiter = waiting.popFirst() {
            waiter.succeed(value)
        } else if let push {
            push(value)
        } else {
            context.close(promise: nil)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if event is RedisTimedOut {
            failAll(.unavailable("timed out"))
            context.close(promise: nil)
            promise?.succeed(())
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason = Self.describe(error)
        if failure == nil { failure = reason }
        failAll(.unavailable(reason))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A tick later: TLS reports its failure (errorCaught) after closing the channel, and that
        // reason is the one worth telling the callers.
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let this = handler.value
            this.failAll(.unavailable(this.failure.map { "connection closed: \($0)" } ?? "connection closed"))
        }
        context.fireChannelInactive()
    }

    private func failAll(_ error: RedisError) {
        while let waiter = waiting.popFirst() { waiter.fail(error) }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOSSLError { return "TLS: \(error)" }
        if let error = error as? NIOSSLExtraError { return "TLS: \(error)" }
        return "\(error)"
    }
}

/// SUBSCRIBE on a connection of its own; messages arrive as pushes. Reconnects with backoff
/// (100 ms doubling to 5 s) and is stopped by closing the connection at graceful shutdown.
private struct RedisSubscriber: Service {
    let client: RedisClient
    let channel: String
    let logger: Logger
    let onSubscribed: @Sendable () -> Void
    let handler: @Sendable (String) -> Void

    func run() async throws {
        let current = Mutex<RedisConnection?>(nil)
        let stopping = Atomic<Bool>(false)
        await withGracefulShutdownHandler {
            var backoff: Duration = .milliseconds(100)
            while !stopping.load(ordering: .relaxed), !Task.isCancelled {
                do {
                    let connection = try await client.connect(on: client.anyLoop) { [handler] value in
                        if case .array(let parts) = value, parts.count == 3, parts[0].bytes == Array("message".utf8),
                            let payload = parts[2].bytes
                        {
                            handler(String(decoding: payload, as: UTF8.self))
                        }
                    }
                    current.withLock { $0 = connection }
                    if stopping.load(ordering: .relaxed) { connection.close() }
                    _ = try await connection.send([[Array("SUBSCRIBE".utf8), Array(channel.utf8)]], timeout: .seconds(2))
                    onSubscribed()
                    backoff = .milliseconds(100)
                    try? await connection.channel.closeFuture.get()
                    current.withLock { $0 = nil }
                    if !stopping.load(ordering: .relaxed) { logger.warning("redis subscription lost; reconnecting") }
                } catch {
                    if !stopping.load(ordering: .relaxed) {
                        logger.warning("redis subscription failed; retrying", metadata: ["reason": .string("\(error)")])
                    }
                }
                if stopping.load(ordering: .relaxed) { break }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        } onGracefulShutdown: {
            stopping.store(true, ordering: .relaxed)
            current.withLock { $0?.close() }
        }
    }
}

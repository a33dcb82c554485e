import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// What `fnhost start --watch` watches, builds and runs.
public struct WatchOptions: Sendable {
    /// The Swift package whose sources are watched and built.
    public var packagePath: String
    /// Folder of function.json and local.settings.json (watched too; the children serve it).
    public var scriptRoot: String
    /// The incremental build, run by `/bin/sh -c` in the package folder.
    public var buildCommand: String
    /// The executable the build produces; each generation runs a copy of it.
    public var binary: String
    /// How often the files are scanned.
    public var interval: Duration = .milliseconds(300)
    /// How long a new generation has to report itself running.
    public var readyTimeout: Duration = .seconds(90)

    public init(packagePath: String, scriptRoot: String, buildCommand: String, binary: String) {
        self.packagePath = packagePath
        self.scriptRoot = scriptRoot
        self.buildCommand = buildCommand
        self.binary = binary
    }
}

/// Hot reload for the emulator (docs/runtime.md "Hot reload"). The supervisor owns the port and
/// proxies every request to the current generation, a child `fnhost start` on an internal loopback
/// port. On a change it runs the incremental build; a failed build prints the compiler's output and
/// the current generation keeps serving. A good build starts the next generation beside the current
/// one, switches new requests to it once its admin status says `Running`, waits for the requests
/// still on their way to the old one, then stops it with SIGTERM (it drains what it holds).
///
/// Why a proxy and not two servers on one port (SO_REUSEPORT): when the old process closes its
/// listening socket, Linux resets the connections still queued in its accept backlog, and a client's
/// keep-alive connection stays with the old process until it closes it: both are failed requests.
/// Behind the proxy, clients keep their connections and never see the switch.
public enum HotReload {
    public static func run(
        _ options: WatchOptions, address: String, port: Int, logger: Logger
    ) async throws {
        try await run(options, address: address, port: port, logger: logger, router: GenerationRouter(), stopsOnSignals: true)
    }

    /// `run` with the router given (tests read which generation serves); without signals it stops
    /// when its task is cancelled.
    static func run(
        _ options: WatchOptions, address: String, port: Int, logger: Logger, router: GenerationRouter, stopsOnSignals: Bool
    ) async throws {
        let client = proxyClient()
        let watcher = ReloadWatcher(options: options, router: router, client: client, logger: logger)
        let application = Application(
            responder: ReloadProxy(router: router, client: client, logger: logger),
            server: .http1(configuration: .init(idleTimeout: .seconds(75))),
            configuration: ApplicationConfiguration(address: .hostname(address, port: port), serverName: nil),
            onServerRunning: { channel in
                logger.info(
                    "Watching for changes", metadata: [
                        "address": .string(address), "port": .stringConvertible(channel.localAddress?.port ?? port),
                        "package": .string(options.packagePath),
                    ])
            },
            logger: logger)
        var group = ServiceGroupConfiguration(
            services: [.init(service: application), .init(service: watcher)], gracefulShutdownSignals: stopsOnSignals ? [.sigterm, .sigint] : [],
            logger: logger)
        group.maximumGracefulShutdownDuration = .seconds(40)
        do {
            try await ServiceGroup(configuration: group).run()
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        logger.info("Watcher stopped")
    }
}

extension HotReload {
    /// The proxy's client: no redirects followed, no decompression, a refused connect fails at once.
    static func proxyClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: .seconds(2)), decompression: .disabled)
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}

/// Which generation new requests go to, and how many requests each generation has on their way.
final class GenerationRouter: Sendable {
    struct Target: Sendable, Equatable {
        let generation: Int
        let port: Int
    }

    private struct State {
        var current: Target?
        var inFlight: [Int: Int] = [:]
    }

    private let state = Mutex(State())

    /// The current generation, counted as in flight until `release`.
    func acquire() -> Target? {
        state.withLock { state in
            guard let target = state.current else { return nil }
            state.inFlight[target.generation, default: 0] += 1
            return target
        }
    }

    func release(_ target: Target) {
        state.withLock { state in
            let left = (state.inFlight[target.generation] ?? 1) - 1
            state.inFlight[target.generation] = left > 0 ? left : nil
        }
    }

    /// New requests go to `target` from now on; answers the generation they went to before.
    func switchTo(_ target: Target?) -> Target? {
        state.withLock { state in
            let previous = state.current
            state.current = target
            return previous
        }
    }

    func inFlight(_ generation: Int) -> Int { state.withLock { $0.inFlight[generation] ?? 0 } }

    var current: Target? { state.withLock { $0.current } }
}

/// Forwards each request to the current generation and streams its answer back.
struct ReloadProxy: HTTPResponder {
    typealias Context = HostRequestContext

    /// Hop-by-hop fields (RFC 9110 §7.6.1), never forwarded.
    static let hopByHop: Set<[UInt8]> = Set(
        ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"].map { Array($0.utf8) })

    let router: GenerationRouter
    let client: HTTPClient
    let logger: Logger

    func respond(to request: Request, context: HostRequestContext) async throws -> Response {
        let requestID = RequestIDs.taken(from: request.headers)
        let path = request.uri.path
        // The child sees the proxy's loopback address; the admin API stays loopback-only here.
        if !context.isFromLoopback, path == "/admin" || path.utf8.starts(with: "/admin/".utf8) {
            return Self.error(.permissionDenied("the admin API answers loopback clients only"), requestID: requestID)
        }
        let body: ByteBuffer
        do {
            // The host's own body rules (a declared or actual body over the limit is 413 unread).
            body = try await HostRequest(request: request, requestID: requestID, context: context)
                .body(limit: HTTPFront.maxPayloadSize)
        } catch {
            return Self.error(error, requestID: requestID)
        }
        guard let target = router.acquire() else {
            return Self.error(.serviceUnavailable("no build is serving yet; see the build output"), requestID: requestID)
        }
        defer { router.release(target) }
        var outbound = HTTPClientRequest(url: "http://127.0.0.1:\(target.port)\(request.uri.description)")
        outbound.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers where !Self.hopByHop.contains(Array(field.name.canonicalName.utf8)) {
            outbound.headers.add(name: field.name.rawName, value: field.value)
        }
        if let authority = request.head.authority { outbound.headers.replaceOrAdd(name: "Host", value: authority) }
        outbound.headers.replaceOrAdd(name: HTTPField.Name.requestID.rawName, value: requestID)
        if body.readableBytes > 0 || request.method == .post || request.method == .put || request.method == .patch {
            outbound.body = .bytes(body)
        }
        let answer: HTTPClientResponse
        do {
            answer = try await client.execute(outbound, timeout: .seconds(300))
        } catch {
            logger.warning(
                "the serving generation did not answer", metadata: [
                    "generation": .stringConvertible(target.generation), "error": .string(String(describing: type(of: error))),
                ])
            // Never connected: nothing reached the generation. Otherwise it may have acted on the
            // request before failing (it crashed), and the answer says the outcome is unknown.
            return Self.error(
                .serviceUnavailable(
                    Self.neverConnected(error)
                        ? "the function host is restarting; try again"
                        : "the function host stopped while answering; the outcome is unknown, check before retrying"),
                requestID: requestID)
        }
        var headers = HTTPFields()
        for (name, value) in answer.headers where !Self.hopByHop.contains(Array(name.lowercased().utf8)) {
            if let fieldName = HTTPField.Name(name) { headers.append(HTTPField(name: fieldName, value: value)) }
        }
        return Response(
            status: HTTPResponse.Status(code: Int(answer.status.code), reasonPhrase: answer.status.reasonPhrase),
            headers: headers, body: ResponseBody(asyncSequence: answer.body))
    }

    /// A failure to connect (refused, connect timeout): the request was never sent.
    static func neverConnected(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if let error = error as? IOError, error.errnoCode == ECONNREFUSED { return true }
        return false
    }

    static func error(_ error: FunctionError, requestID: String) -> Response {
        var response = HTTPFront.response(.error(error, requestID: requestID))
        response.headers[.requestID] = requestID
        return response
    }
}

/// The files a change of which means a reload: the package's Swift sources and Package.swift
/// (hidden folders such as `.build`, and `Tests`, skipped), function.json and local.settings.json.
/// Paths are keyed on their bytes.
struct SourceSnapshot: Equatable, Sendable {
    struct Stamp: Equatable, Sendable {
        var modified: Double
        var size: UInt64
    }

    var files: [[UInt8]: Stamp] = [:]

    static func scan(packagePath: String, scriptRoot: String) -> SourceSnapshot {
        var snapshot = SourceSnapshot()
        let keys: [URLResourceKey] = [.contentModificationDateKey, .fileSizeKey, .isDirectoryKey]
        let package = URL(fileURLWithPath: packagePath)
        if let walker = FileManager.default.enumerator(at: package, includingPropertiesForKeys: keys, options: [.skipsHiddenFiles]) {
            for case let url as URL in walker {
                let values = try? url.resourceValues(forKeys: Set(keys))
                if values?.isDirectory == true {
                    if url.lastPathComponent == "Tests" { walker.skipDescendants() }
                    continue
                }
                guard url.pathExtension == "swift" else { continue }
                snapshot.record(url.path, values)
            }
        }
        for name in ["function.json", "local.settings.json"] {
            let url = URL(fileURLWithPath: scriptRoot).appendingPathComponent(name)
            snapshot.record(url.path, try? url.resourceValues(forKeys: Set(keys)))
        }
        return snapshot
    }

    private mutating func record(_ path: String, _ values: URLResourceValues?) {
        guard let values, let modified = values.contentModificationDate else { return }
        files[Array(path.utf8)] = Stamp(modified: modified.timeIntervalSince1970, size: UInt64(max(0, values.fileSize ?? 0)))
    }

    /// Up to `limit` paths that differ between the two snapshots (added, removed or changed).
    func changes(since earlier: SourceSnapshot, limit: Int = 5) -> [String] {
        var changed: [String] = []
        for (path, stamp) in files where earlier.files[path] != stamp {
            changed.append(String(decoding: path, as: UTF8.self))
        }
        for path in earlier.files.keys where files[path] == nil {
            changed.append(String(decoding: path, as: UTF8.self))
        }
        return Array(changed.sorted().prefix(limit))
    }
}

/// One generation: a copy of the built binary running `fnhost start` on an internal port.
final class Generation: Sendable {
    let target: GenerationRouter.Target
    private let process: Process
    private let copy: URL

    private init(target: GenerationRouter.Target, process: Process, copy: URL) {
        self.target = target
        self.process = process
        self.copy = copy
    }

    /// Where this process stages the generations' binaries (removed when the watcher stops).
    static func stagingFolder(binary: String) -> URL {
        URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent(".fnhost-watch-\(getpid())")
    }

    /// Starts generation `number` and waits until it reports itself running.
    static func launch(
        _ number: Int, options: WatchOptions, client: HTTPClient, logger: Logger
    ) async throws(ReloadError) -> Generation {
        // Beside the binary (same file system), under a name of this generation's own: the next build
        // replaces the binary's file while this generation runs from its own name.
        let built = URL(fileURLWithPath: options.binary)
        let folder = stagingFolder(binary: options.binary)
        let copy = folder.appendingPathComponent("\(built.lastPathComponent)-\(number)")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try? FileManager.default.removeItem(at: copy)
            // A hard link: nothing is written, so no descriptor open for writing can make the file
            // "busy" for exec (a process that forks while a copy is being written inherits one).
            // Linkers write a new file and rename it over the old name, never into the linked one.
            if link(built.path, copy.path) != 0 {
                try FileManager.default.copyItem(at: built, to: copy)
            }
        } catch {
            throw ReloadError("cannot stage the built binary \(options.binary): \(error.localizedDescription)")
        }
        let port = try await freeLoopbackPort()
        var attempt = 0
        var started: Process?
        while started == nil {
            let process = Process()
            process.executableURL = copy
            process.arguments = ["start", "--script-root", options.scriptRoot, "--port", String(port), "--address", "127.0.0.1"]
            do {
                try process.run()
                started = process
            } catch {
                // A copied file may be briefly busy (another thread's child between fork and exec).
                attempt += 1
                guard attempt < 5 else {
                    try? FileManager.default.removeItem(at: copy)
                    throw ReloadError("cannot start \(copy.path): \(error.localizedDescription)")
                }
                await pause(milliseconds: 100)
            }
        }
        guard let process = started else { throw ReloadError("cannot start \(copy.path)") }
        let generation = Generation(target: .init(generation: number, port: port), process: process, copy: copy)
        let deadline = ContinuousClock.now + options.readyTimeout
        while ContinuousClock.now < deadline, !Task.isCancelled {
            guard process.isRunning else {
                generation.removeCopy()
                throw ReloadError("generation \(number) exited with status \(process.terminationStatus) before it was ready")
            }
            if await generation.isRunning(client: client) { return generation }
            await pause(milliseconds: 100)
        }
        await generation.stop(logger: logger)
        throw ReloadError(Task.isCancelled ? "stopped while generation \(number) was starting" : "generation \(number) was not running after \(options.readyTimeout)")
    }

    /// The emulator's admin status says `Running`.
    private func isRunning(client: HTTPClient) async -> Bool {
        let request = HTTPClientRequest(url: "http://127.0.0.1:\(target.port)/admin/host/status")
        guard let response = try? await client.execute(request, timeout: .seconds(2)), response.status == .ok,
            let body = try? await response.body.collect(upTo: 1 << 16)
        else { return false }
        return String(buffer: body).contains(#""state":"Running""#)
    }

    var exited: Bool { !process.isRunning }

    /// SIGTERM (the generation drains what it holds), SIGKILL after 35 s; then the copy goes.
    func stop(logger: Logger) async {
        if process.isRunning { process.terminate() }
        let deadline = ContinuousClock.now + .seconds(35)
        while process.isRunning, ContinuousClock.now < deadline { await pause(milliseconds: 50) }
        if process.isRunning {
            logger.warning("generation did not stop in time; killing it", metadata: ["generation": .stringConvertible(target.generation)])
            kill(process.processIdentifier, SIGKILL)
            while process.isRunning { await pause(milliseconds: 50) }
        }
        removeCopy()
    }

    private func removeCopy() { try? FileManager.default.removeItem(at: copy) }
}

struct ReloadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A port nothing listens on right now (bound and released; the child binds it next).
func freeLoopbackPort() async throws(ReloadError) -> Int {
    do {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port
        try await channel.close()
        guard let port else { throw ReloadError("no local port") }
        return port
    } catch let error as ReloadError {
        throw error
    } catch {
        throw ReloadError("cannot find a free loopback port: \(error)")
    }
}

/// Scans for changes, builds, and switches generations; stops the last one on shutdown.
struct ReloadWatcher: Service {
    let options: WatchOptions
    let router: GenerationRouter
    let client: HTTPClient
    let logger: Logger

    /// The generation serving now (the watcher's own, read again at shutdown).
    private let serving = ServingGeneration()

    init(options: WatchOptions, router: GenerationRouter, client: HTTPClient, logger: Logger) {
        self.options = options
        self.router = router
        self.client = client
        self.logger = logger
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { [self] in
                var generation = 0
                var snapshot = SourceSnapshot.scan(packagePath: options.packagePath, scriptRoot: options.scriptRoot)
                try await reload(&generation, reason: [])
                while true {
                    try await Task.sleep(for: options.interval)
                    var now = SourceSnapshot.scan(packagePath: options.packagePath, scriptRoot: options.scriptRoot)
                    guard now != snapshot else { continue }
                    // Let an editor or a checkout finish writing: two scans in a row agree.
                    while true {
                        try await Task.sleep(for: .milliseconds(150))
                        let again = SourceSnapshot.scan(packagePath: options.packagePath, scriptRoot: options.scriptRoot)
                        if again == now { break }
                        now = again
                    }
                    let changed = now.changes(since: snapshot)
                    snapshot = now
                    try await reload(&generation, reason: changed)
                }
            }
        } catch is CancellationError {
        }
        _ = router.switchTo(nil)
        if let last = serving.take() { await last.stop(logger: logger) }
        try? FileManager.default.removeItem(at: Generation.stagingFolder(binary: options.binary))
    }

    /// Builds; on success starts the next generation, switches to it and stops the previous one.
    private func reload(_ generation: inout Int, reason: [String]) async throws {
        logger.info(
            reason.isEmpty ? "Building" : "Change detected; building",
            metadata: ["changed": .array(reason.map { .string($0) }), "command": .string(options.buildCommand)])
        let build = await runBuild()
        try Task.checkCancellation()
        guard build.status == 0 else {
            FileHandle.standardError.write(Data(build.output.utf8))
            let current = router.current?.generation
            logger.error(
                current.map { "Build failed; generation \($0) keeps serving" } ?? "Build failed; nothing is serving yet",
                metadata: ["status": .stringConvertible(build.status)])
            return
        }
        generation += 1
        let next: Generation
        do {
            next = try await Generation.launch(generation, options: options, client: client, logger: logger)
        } catch {
            logger.error("The new build did not start; the previous generation keeps serving", metadata: ["reason": .string(error.description)])
            return
        }
        let previous = serving.replace(with: next)
        _ = router.switchTo(next.target)
        logger.info(
            "Reloaded", metadata: ["generation": .stringConvertible(next.target.generation), "internal_port": .stringConvertible(next.target.port)])
        guard let previous else { return }
        // Requests already forwarded to the previous generation finish there first.
        let deadline = ContinuousClock.now + .seconds(30)
        while router.inFlight(previous.target.generation) > 0, ContinuousClock.now < deadline {
            await pause(milliseconds: 20)
        }
        await previous.stop(logger: logger)
    }

    /// Runs the build command in the package folder; its output (stdout and stderr) through a file.
    private func runBuild() async -> (status: Int32, output: String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-build-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", options.buildCommand]
        process.currentDirectoryURL = URL(fileURLWithPath: options.packagePath)
        do {
            guard FileManager.default.createFile(atPath: output.path, contents: nil) else {
                return (127, "cannot write the build output to \(output.path)\n")
            }
            let handle = try FileHandle(forWritingTo: output)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            try? handle.close()
        } catch {
            return (127, "cannot run the build command: \(error.localizedDescription)\n")
        }
        while process.isRunning { await pause(milliseconds: 50) }
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        return (process.terminationStatus, text)
    }
}

/// The generation a watcher is serving.
final class ServingGeneration: Sendable {
    private let value = Mutex<Generation?>(nil)

    func replace(with next: Generation) -> Generation? {
        value.withLock { value in
            let previous = value
            value = next
            return previous
        }
    }

    func take() -> Generation? {
        value.withLock { value in
            let last = value
            value = nil
            return last
        }
    }
}

/// Waits even in a cancelled task (stopping a generation must still wait for it).
func pause(milliseconds: Int64) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        _ = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .milliseconds(milliseconds)) { continuation.resume() }
    }
}

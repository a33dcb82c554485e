import Foundation

/// A redis-server of the test's own on a free port, so it can be stopped and started again mid-test;
/// optionally TLS-only (the certificate `scripts/with-services.sh` generated) with an ACL user and the
/// default user disabled, as managed Redis is set up.
public final class OwnRedis: @unchecked Sendable {
    public struct ACLUser: Sendable {
        public var name: String
        public var password: String
        public init(name: String, password: String) {
            self.name = name
            self.password = password
        }
    }

    public let port: Int
    public let tls: Bool
    public let user: ACLUser?
    public let bind: String
    /// `requirepass` (the default user's password) when set.
    public let password: String?
    private var process: Process?
    private let folder: URL

    public init(tls: Bool = false, user: ACLUser? = nil, password: String? = nil, bind: String = "127.0.0.1") throws {
        port = try FreePort.pick()
        self.tls = tls
        self.user = user
        self.password = password
        self.bind = bind
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    /// The URL a client uses (`rediss://` with the ACL user when configured; `database` appended as `/N`).
    public func url(host: String = "127.0.0.1", user: ACLUser? = nil, database: Int? = nil) -> String {
        let credentials = (user ?? self.user).map { "\($0.name):\($0.password)@" } ?? password.map { ":\($0)@" } ?? ""
        return "\(tls ? "rediss" : "redis")://\(credentials)\(host):\(port)" + (database.map { "/\($0)" } ?? "")
    }

    public func start() async throws {
        var config = ["bind \(bind)", "save \"\"", "appendonly no", "dir \(folder.path)"]
        if tls {
            config += [
                "port 0", "tls-port \(port)", "tls-cert-file \(try TestServices.serverCertificate())",
                "tls-key-file \(try TestServices.serverKey())", "tls-ca-cert-file \(try TestServices.caFile())",
                "tls-auth-clients no",
            ]
        } else {
            config.append("port \(port)")
        }
        if let user {
            config += ["user default off", "user \(user.name) on >\(user.password) ~* &* +@all"]
        }
        if let password { config.append("requirepass \(password)") }
        let file = folder.appendingPathComponent("redis.conf")
        try Data((config.joined(separator: "\n") + "\n").utf8).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-server", file.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Up once it answers (any answer: NOAUTH counts) on its port.
        var ping = ["redis-cli", "-h", String(bind.split(separator: " ").first ?? "127.0.0.1"), "-p", String(port)]
        if tls { ping += ["--tls", "--cacert", try TestServices.caFile()] }
        ping.append("PING")
        for _ in 0..<100 {
            if let run = try? await runProgram("/usr/bin/env", ping), !run.output.isEmpty, !run.output.contains("Could not connect"),
                !run.output.contains("refused"), !run.output.contains("reset")
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSupportError("redis-server did not start on \(port)")
    }

    /// SIGKILL and poll (Foundation's `waitUntilExit` spins off the main thread on Linux).
    public func stop() async {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        for _ in 0..<100 where process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        self.process = nil
    }

    deinit {
        if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: folder)
    }
}

/// A PostgreSQL 15 server of the test's own (`initdb` + `pg_ctl`, as the `postgres` user when the
/// tests run as root) on a free loopback port, so a test can stop it in the middle of work and start it
/// again on the same port with the same data. Role `fnhost` owns database `fnhost` (trust auth on
/// loopback: the server lives only as long as the test).
public final class OwnPostgres: @unchecked Sendable {
    public let port: Int
    private let folder: URL
    private var data: URL { folder.appendingPathComponent("pg") }
    private let binaries: String
    private var running = false

    /// `postgres://fnhost@127.0.0.1:PORT/fnhost?sslmode=disable`.
    public var url: String { "postgres://fnhost@127.0.0.1:\(port)/fnhost?sslmode=disable" }

    public init() throws {
        port = try FreePort.pick()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-pg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let candidates = ["/usr/lib/postgresql/15/bin"]
            + ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).sorted().reversed()
            .map { "/usr/lib/postgresql/\($0)/bin" }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }) else {
            throw TestSupportError("PostgreSQL server binaries not found under /usr/lib/postgresql (make test installs them)")
        }
        binaries = found
    }

    private var initialized = false

    private func asPostgres(_ command: [String]) async throws -> (status: Int32, output: String) {
        getuid() == 0
            ? try await runProgram("/usr/sbin/runuser", ["-u", "postgres", "--"] + command)
            : try await runProgram(command[0], Array(command.dropFirst()))
    }

    /// Starts (or restarts) the server on its port; the first start runs initdb and creates role and
    /// database `fnhost`.
    public func start() async throws {
        if !initialized {
            if getuid() == 0 { _ = try await runProgram("/bin/chown", ["postgres", folder.path]) }
            let initdb = try await asPostgres(["\(binaries)/initdb", "-D", data.path, "-U", "postgres", "--auth=trust", "--no-sync"])
            guard initdb.status == 0 else { throw TestSupportError("initdb failed: \(initdb.output)") }
            initialized = true
        }
        let options = "-p \(port) -k \(data.path) -c listen_addresses=127.0.0.1 -c fsync=off"
        let started = try await asPostgres(["\(binaries)/pg_ctl", "-D", data.path, "-l", folder.appendingPathComponent("log").path, "-w", "-o", options, "start"])
        guard started.status == 0 else { throw TestSupportError("pg_ctl start failed: \(started.output)") }
        running = true
        let exists = try await asPostgres(["\(binaries)/psql", "-h", data.path, "-p", String(port), "-U", "postgres", "-tAc", "SELECT 1 FROM pg_roles WHERE rolname = 'fnhost'"])
        if !exists.output.contains("1") {
            let created = try await asPostgres([
                "\(binaries)/psql", "-h", data.path, "-p", String(port), "-U", "postgres", "-q", "-c", "CREATE ROLE fnhost LOGIN", "-c",
                "CREATE DATABASE fnhost OWNER fnhost",
            ])
            guard created.status == 0 else { throw TestSupportError("creating role fnhost failed: \(created.output)") }
        }
    }

    /// Stops the server: `immediate` is a crash (connections cut, no checkpoint), `fast` a clean shutdown.
    public func stop(mode: String = "immediate") async throws {
        guard running else { return }
        let stopped = try await asPostgres(["\(binaries)/pg_ctl", "-D", data.path, "-m", mode, "-w", "stop"])
        guard stopped.status == 0 else { throw TestSupportError("pg_ctl stop failed: \(stopped.output)") }
        running = false
    }

    /// Never waits: SIGQUIT to the postmaster (an immediate shutdown), whose pid is the first line of postmaster.pid.
    deinit {
        if running, let text = try? String(contentsOf: data.appendingPathComponent("postmaster.pid"), encoding: .utf8),
            let line = text.split(separator: "\n").first, let pid = Int32(line)
        {
            kill(pid, SIGQUIT)
        }
        let folder = folder
        DispatchQueue.global().asyncAfter(deadline: .now() + 2) { try? FileManager.default.removeItem(at: folder) }
    }
}

import Foundation

/// Why a test could not set up what it needs (a service missing, a port not free).
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The repository the tests run from.
public enum Repository {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    public static func file(_ path: String) -> URL { root.appendingPathComponent(path) }

    /// The repository's own `function.json`.
    public static func manifest() throws -> String {
        try String(contentsOf: file("function.json"), encoding: .utf8)
    }
}

/// A fresh script root (a temporary folder) holding `function.json` and, when given, `local.settings.json`.
public enum ScriptRoot {
    public static func make(manifest: String, localSettings: String? = nil) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-root-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(manifest.utf8).write(to: directory.appendingPathComponent("function.json"))
        if let localSettings {
            try Data(localSettings.utf8).write(to: directory.appendingPathComponent("local.settings.json"))
        }
        return directory.path
    }

    /// A script root with the repository's `function.json`.
    public static func repository(localSettings: String? = nil) throws -> String {
        try make(manifest: try Repository.manifest(), localSettings: localSettings)
    }
}

/// The services `scripts/with-services.sh` started for this run (`make test`).
public enum TestServices {
    public static func required(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw TestSupportError("\(name) is not set: run the tests through `make test` (scripts/with-services.sh)")
        }
        return value
    }

    public static func redisURL() throws -> String { try required("FNHOST_TEST_REDIS_URL") }
    public static func databaseURL() throws -> String { try required("FNHOST_TEST_DATABASE_URL") }
    public static func postgresAdminURL() throws -> String { try required("FNHOST_TEST_POSTGRES_ADMIN_URL") }
    /// The generated CA, and the server certificate and key for 127.0.0.1/localhost it signed.
    public static func caFile() throws -> String { try required("FNHOST_TEST_PG_CA") }
    public static func otherCAFile() throws -> String { try required("FNHOST_TEST_PG_OTHER_CA") }
    public static func serverCertificate() throws -> String { try required("FNHOST_TEST_TLS_CERT") }
    public static func serverKey() throws -> String { try required("FNHOST_TEST_TLS_KEY") }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. Tests wait on
/// conditions, never for fixed times.
public func eventually(
    timeout: Duration = .seconds(10), every interval: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// Runs a program to completion; stdout and stderr together. `posix_spawn` and `waitpid`, output
/// through a file: `Process` waits for its child on a descriptor that a daemon the program starts
/// (`pg_ctl start`) inherits and keeps open, so it would never see the child exit. The wait runs on a
/// Dispatch thread: blocking one of Swift concurrency's (two, on this machine) pool threads would stall
/// every other test of the run — it made a refused connection look 2.7 s slow.
public func runProgram(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil
) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try runProgramBlocking(executable, arguments, environment: environment, directory: directory) })
        }
    }
}

/// `runProgram`, blocking the calling thread (for code already off the concurrency pool).
public func runProgramBlocking(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil
) throws -> (status: Int32, output: String) {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-run-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: file) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, file.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let variables = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
    func cStrings(_ strings: [String]) -> [UnsafeMutablePointer<CChar>?] { strings.map { strdup($0) } + [nil] }
    // A working directory through the shell (`posix_spawn_file_actions_addchdir_np` is not exported).
    let command = directory.map { ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", $0.path, executable] + arguments } ?? [executable] + arguments
    let argv = cStrings(command)
    let envp = cStrings(variables)
    defer { for pointer in argv + envp { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, command[0], &actions, nil, argv, envp)
    guard spawned == 0 else { throw TestSupportError("cannot run \(executable): error \(spawned)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    let exited = (status & 0x7f) == 0
    return (exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), (try? String(contentsOf: file, encoding: .utf8)) ?? "")
}

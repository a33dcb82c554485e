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

/// Runs a program to completion; stdout and stderr together. Polled: Foundation's
/// `waitUntilExit` can spin off the main thread on Linux.
public func runProgram(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    while process.isRunning { usleep(10_000) }
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

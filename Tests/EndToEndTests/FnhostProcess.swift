import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A running `fnhost` child process with its output captured.
final class FnhostProcess: @unchecked Sendable {
    private let process: Process
    private let stdoutFile: URL
    private let stderrFile: URL

    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["FNHOST_BIN"], !path.isEmpty { return path }
        return FnhostProcessTests.repositoryRoot.appendingPathComponent(".build/debug/fnhost").path
    }

    static func start(arguments: [String], environment: [String: String] = [:]) throws -> FnhostProcess {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw ProcessError("fnhost binary not found at \(binary): run `swift build` first (make test does)")
        }
        return try FnhostProcess(arguments: arguments, environment: environment)
    }

    private init(arguments: [String], environment: [String: String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["LOG_LEVEL"] = "info"
        env["ENVIRONMENT"] = nil
        env.merge(environment) { $1 }
        process.environment = env
        let directory = FileManager.default.temporaryDirectory
        stdoutFile = directory.appendingPathComponent("fnhost-out-\(UUID().uuidString)")
        stderrFile = directory.appendingPathComponent("fnhost-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
    }

    var stdoutText: String { (try? String(contentsOf: stdoutFile, encoding: .utf8)) ?? "" }
    var stderrText: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }
    var stdoutLines: [String] { stdoutText.split(separator: "\n").map(String.init) }

    /// The port from the `Host started` log line.
    func waitForPort(timeout: Duration = .seconds(30)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for line in stdoutLines where line.contains(#""msg":"Host started""#) {
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let port = object["port"] as? Int
                {
                    return port
                }
            }
            if !process.isRunning { throw ProcessError("fnhost exited early: \(stderrText)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ProcessError("fnhost did not start in time: \(stdoutText)")
    }

    func terminate() {
        if process.isRunning { process.terminate() }
    }

    /// The exit status, or nil if it did not exit in time.
    func waitForExit(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    static func scriptRoot(manifest: String, localSettings: String? = nil) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(manifest.utf8).write(to: directory.appendingPathComponent("function.json"))
        if let localSettings {
            try Data(localSettings.utf8).write(to: directory.appendingPathComponent("local.settings.json"))
        }
        return directory.path
    }

    /// A loopback port that was free a moment ago.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else { throw ProcessError("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

struct ProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum HTTP {
    static func get(_ url: String, headers: [String: String] = [:]) async throws -> (Int, String, [String: String]) {
        try await send(url, method: "GET", body: nil, headers: headers)
    }

    static func post(_ url: String, body: String, headers: [String: String] = [:]) async throws -> (Int, String, [String: String]) {
        try await send(url, method: "POST", body: body, headers: headers)
    }

    static func send(_ url: String, method: String, body: String?, headers: [String: String]) async throws -> (Int, String, [String: String]) {
        guard let target = URL(string: url) else { throw ProcessError("bad url \(url)") }
        var request = URLRequest(url: target)
        request.httpMethod = method
        request.httpBody = body.map { Data($0.utf8) }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw ProcessError("not HTTP") }
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { fields[name] = value }
        }
        return (http.statusCode, String(decoding: data, as: UTF8.self), fields)
    }
}

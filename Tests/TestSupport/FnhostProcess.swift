import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A running `fnhost` child process with its output captured.
public final class FnhostProcess: @unchecked Sendable {
    private let process: Process
    private let stdoutFile: URL
    private let stderrFile: URL

    public static var binary: String {
        if let path = ProcessInfo.processInfo.environment["FNHOST_BIN"], !path.isEmpty { return path }
        return Repository.file(".build/debug/fnhost").path
    }

    public static func start(arguments: [String], environment: [String: String] = [:]) throws -> FnhostProcess {
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

    public var stdoutText: String { (try? String(contentsOf: stdoutFile, encoding: .utf8)) ?? "" }
    public var stderrText: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }
    public var stdoutLines: [String] { stdoutText.split(separator: "\n").map(String.init) }

    /// The port from the `Host started` log line.
    public func waitForPort(timeout: Duration = .seconds(30)) async throws -> Int {
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

    public func terminate() {
        if process.isRunning { process.terminate() }
    }

    /// The exit status, or nil if it did not exit in time.
    public func waitForExit(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        return process.isRunning ? nil : process.terminationStatus
    }
}

public struct ProcessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum HTTP {
    public static func get(_ url: String, headers: [String: String] = [:]) async throws -> (Int, String, [String: String]) {
        try await send(url, method: "GET", body: nil, headers: headers)
    }

    public static func post(_ url: String, body: String, headers: [String: String] = [:]) async throws -> (Int, String, [String: String]) {
        try await send(url, method: "POST", body: body, headers: headers)
    }

    public static func send(_ url: String, method: String, body: String?, headers: [String: String]) async throws -> (Int, String, [String: String]) {
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

extension FnhostProcess {
    /// Runs the built `fnhost` to completion (ENVIRONMENT unset unless given, in a temporary folder);
    /// stdout and stderr together.
    public static func run(_ arguments: [String], environment: [String: String]) async throws -> (status: Int32, output: String) {
        var env = ProcessInfo.processInfo.environment
        env["ENVIRONMENT"] = nil
        env.merge(environment) { $1 }
        return try await runProgram(binary, arguments, environment: env, directory: FileManager.default.temporaryDirectory)
    }
}

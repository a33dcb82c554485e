import Foundation
import Logging

import FunctionRuntime

/// A module assembled by a test.
public struct TestModule: FunctionModule {
    public var settingDefaults: [String: String] = [:]
    let body: @Sendable (inout ModuleContext) -> Void

    public init(settingDefaults: [String: String] = [:], body: @escaping @Sendable (inout ModuleContext) -> Void) {
        self.settingDefaults = settingDefaults
        self.body = body
    }

    public func configure(_ context: inout ModuleContext) async throws {
        body(&context)
    }
}

/// A fresh script root holding the given function.json (and local.settings.json).
public func makeScriptRoot(manifest: String, localSettings: String? = nil) throws -> String {
    try ScriptRoot.make(manifest: manifest, localSettings: localSettings)
}

/// JSON log lines written to a temporary file, read back for assertions.
public final class CapturedLogs: Sendable {
    public let path: String
    public let sink: LogSink

    public init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-log-\(UUID().uuidString)").path
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        sink = LogSink(fileDescriptor: descriptor)
    }

    public func logger(level: Logger.Level = .debug) -> Logger {
        let sink = sink
        return Logger(label: "test") { label in JSONLogHandler(label: label, sink: sink, level: level) }
    }

    public func redactingLogger(_ redactor: SecretRedactor, level: Logger.Level = .trace) -> Logger {
        let sink = sink
        return Logger(label: "test") { label in JSONLogHandler(label: label, sink: sink, level: level, redactor: redactor) }
    }

    public var text: String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// Every line parsed as a JSON object (a line that is not one fails the test that reads it).
    public var lines: [[String: Any]] {
        text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    public var rawLineCount: Int { text.split(separator: "\n").count }
}

/// Collects timer invocations across tasks.
public actor InvocationRecorder {
    public private(set) var invocations: [(name: String, info: TimerInfo, at: Date)] = []

    public init() {}

    public func record(_ name: String, _ info: TimerInfo) {
        invocations.append((name, info, Date()))
    }

    public func count(_ name: String) -> Int {
        invocations.filter { $0.name == name }.count
    }

    /// Waits until `name` ran at least `count` times, or the timeout passes.
    public func wait(for name: String, count: Int, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if self.count(name) >= count { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return self.count(name) >= count
    }
}

public let httpOutBinding = #"{"type":"http","direction":"out","name":"res"}"#

public func httpFunction(_ name: String, route: String, methods: [String] = ["get"]) -> String {
    let list = methods.map { "\"\($0)\"" }.joined(separator: ",")
    return #""\#(name)":{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","methods":[\#(list)],"route":"\#(route)"},\#(httpOutBinding)]}"#
}

public func timerFunction(_ name: String, schedule: String, runOnStartup: Bool = false) -> String {
    #""\#(name)":{"bindings":[{"type":"timerTrigger","direction":"in","name":"timer","schedule":"\#(schedule)","runOnStartup":\#(runOnStartup)}]}"#
}

public func manifestJSON(_ entries: String...) -> String {
    #"{"functions":{\#(entries.joined(separator: ","))}}"#
}

import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `fnhost start --watch` (docs/runtime.md "Hot reload") on the real binary. The build command is a
/// script of the test's own — it fails while a marker file exists, printing a compiler-style error —
/// and the "built" binary is the `fnhost` under test: the supervisor's watching, building, starting,
/// switching and draining are real; only `swift build` itself (minutes on a clean tree) is not run.
@Suite struct HotReloadTests {
    static let buildScript = """
        echo build >> builds.log
        if [ -f fail-build ]; then
            echo "Sources/Edit.swift:3:7: error: cannot find 'nope' in scope" >&2
            exit 1
        fi
        exit 0
        """

    /// The repository's manifest with one function changed (or removed, with nil).
    static func manifest(_ name: String, _ change: (inout [String: Any]) -> Void) throws -> String {
        let data = Data(try Repository.manifest().utf8)
        guard var root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            var functions = root["functions"] as? [String: Any], var function = functions[name] as? [String: Any]
        else { throw ProcessError("function.json is not an object") }
        change(&function)
        functions[name] = function.isEmpty ? nil : function
        root["functions"] = functions
        return String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
    }

    /// HealthReady at another route.
    static func movedReadiness() throws -> String {
        try manifest("HealthReady") { function in
            guard var bindings = function["bindings"] as? [[String: Any]] else { return }
            bindings[0]["route"] = "health/later"
            function["bindings"] = bindings
        }
    }

    /// A client loop across reloads: every answer 200, none failed — the port never changes hands.
    @Test func reloadsOnTheSamePortWithoutAFailedRequest() async throws {
        let root = try ScriptRoot.make(
            manifest: try Self.movedReadiness(),
            localSettings: #"{"IsEncrypted":false,"Values":{"ENVIRONMENT":"development"}}"#)
        let folder = URL(fileURLWithPath: root)
        try Data(Self.buildScript.utf8).write(to: folder.appendingPathComponent("build.sh"))
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("Sources"), withIntermediateDirectories: true)
        let source = folder.appendingPathComponent("Sources/Edit.swift")
        try Data("let edit = 1\n".utf8).write(to: source)
        let port = try FreePort.pick()
        let process = try FnhostProcess.start(arguments: [
            "start", "--watch", "--port", String(port), "--script-root", root, "--build-command", "sh build.sh",
            "--watch-binary", FnhostProcess.binary,
        ])
        defer { process.terminate() }
        let base = "http://127.0.0.1:\(port)"
        func status(_ path: String) async -> Int? { try? await HTTP.get(base + path).0 }

        #expect(await eventually(timeout: .seconds(90)) { await status("/health") == 200 }, "generation 1 serves: \(process.stdoutText)")
        #expect(await status("/health/ready") == 404, "moved in the first manifest")
        #expect(await status("/health/later") == 200)
        let first = try #require(Self.reloaded(process, generation: 1))

        // A client loop for the whole test, on keep-alive connections (URLSession's pool).
        let results = Mutex<(ok: Int, failures: [String])>((0, []))
        let stop = Atomic<Bool>(false)
        let loop = Task {
            while !stop.load(ordering: .relaxed) {
                do {
                    let (code, body, _) = try await HTTP.get(base + "/health")
                    results.withLock { results in
                        if code == 200 { results.ok += 1 } else { results.failures.append("\(code) \(body)") }
                    }
                } catch {
                    results.withLock { $0.failures.append(String(describing: error)) }
                }
            }
        }

        let answeredBeforeReload = try #require(await Self.answers(results, moreThan: 0))
        // 1. function.json changes: the next generation serves the new route on the same port.
        try Data(try Repository.manifest().utf8).write(to: folder.appendingPathComponent("function.json"))
        #expect(await eventually(timeout: .seconds(90)) { await status("/health/ready") == 200 }, "\(process.stdoutText)")
        #expect(await status("/health/later") == 404)
        let answeredOnGeneration2 = try #require(await Self.answers(results, moreThan: answeredBeforeReload))
        let second = try #require(Self.reloaded(process, generation: 2))
        #expect(second != first && second != port)
        // The previous generation drained and stopped: its internal port refuses.
        #expect(await eventually(timeout: .seconds(45)) { await Self.refuses(first) }, "generation 1 stopped")

        // 2. A failing build: the compiler's message is printed, generation 2 keeps serving.
        try Data().write(to: folder.appendingPathComponent("fail-build"))
        try Data("let edit = nope\n".utf8).write(to: source)
        #expect(
            await eventually(timeout: .seconds(30)) { process.stderrText.contains("error: cannot find 'nope' in scope") },
            "the build output reaches the terminal")
        #expect(await eventually(timeout: .seconds(10)) { process.stdoutText.contains("Build failed; generation 2 keeps serving") })
        #expect(await status("/health/ready") == 200)
        #expect(!(await Self.refuses(second)), "generation 2 still runs")

        // 3. The build passes but the new generation cannot start (a handler without a function.json
        //    entry): generation 2 keeps serving.
        try FileManager.default.removeItem(at: folder.appendingPathComponent("fail-build"))
        try Data(try Self.manifest("HealthReady") { $0 = [:] }.utf8).write(to: folder.appendingPathComponent("function.json"))
        #expect(
            await eventually(timeout: .seconds(60)) { process.stdoutText.contains("The new build did not start; the previous generation keeps serving") },
            "\(process.stdoutText)")
        #expect(await status("/health/ready") == 200)
        #expect(!(await Self.refuses(second)), "generation 2 still runs")

        // 4. Fixed: generation 4 takes over, generation 2 drains and stops.
        try Data(try Repository.manifest().utf8).write(to: folder.appendingPathComponent("function.json"))
        try Data("let edit = 2\n".utf8).write(to: source)
        #expect(await eventually(timeout: .seconds(90)) { Self.reloaded(process, generation: 4) != nil }, "\(process.stdoutText)")
        let third = try #require(Self.reloaded(process, generation: 4))
        #expect(await eventually(timeout: .seconds(45)) { await Self.refuses(second) }, "generation 2 stopped")

        // Keep the loop going a little on generation 4, then stop it.
        _ = try #require(await Self.answers(results, moreThan: answeredOnGeneration2 + 10))
        stop.store(true, ordering: .relaxed)
        await loop.value
        let (ok, failures) = results.withLock { ($0.ok, $0.failures) }
        #expect(failures.isEmpty, "failed requests across the reloads: \(failures.prefix(5))")
        #expect(ok > answeredOnGeneration2, "the loop ran throughout (\(ok) answers)")
        let builds = try String(contentsOf: folder.appendingPathComponent("builds.log"), encoding: .utf8)
        #expect(builds.split(separator: "\n").count >= 5, "one build at start and one per change")

        // SIGTERM: the supervisor stops the serving generation and exits cleanly.
        process.terminate()
        #expect(await process.waitForExit(timeout: .seconds(60)) == 0)
        #expect(await Self.refuses(third), "generation 4 stopped with the supervisor")
        #expect(await Self.refuses(port))
    }

    /// Waits until the loop has more than `count` good answers; the count then (nil if it never had).
    static func answers(_ results: borrowing Mutex<(ok: Int, failures: [String])>, moreThan count: Int) async -> Int? {
        var seen = 0
        let grew = await eventually(timeout: .seconds(30)) {
            seen = results.withLock { $0.ok }
            return seen > count
        }
        return grew ? seen : nil
    }

    /// The internal port of generation `number`, from its `Reloaded` log line.
    static func reloaded(_ process: FnhostProcess, generation number: Int) -> Int? {
        for line in process.stdoutLines where line.contains(#""msg":"Reloaded""#) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            let generation = (object["generation"] as? Int) ?? (object["generation"] as? String).flatMap { Int($0) }
            guard generation == number else { continue }
            return (object["internal_port"] as? Int) ?? (object["internal_port"] as? String).flatMap { Int($0) }
        }
        return nil
    }

    static func refuses(_ port: Int) async -> Bool { FreePort.refuses(port) }
}

import Foundation

/// `fnhost package`: the Azure Functions deployment layout for custom-handler mode.
///
/// ```
/// OUT/host.json            version 2.0, customHandler → `fnhost serve`, forwarding on, routePrefix ""
/// OUT/NAME/function.json   each manifest entry exactly as written in the top-level function.json
/// OUT/fnhost               the handler binary
/// ```
/// Nothing else is copied: no `local.settings.json`, no secrets.
public enum Packager {
    public struct PackageError: Error, CustomStringConvertible {
        public let description: String
    }

    public static let executableName = "fnhost"

    /// host.json for the deployment (stable key order, so a package diff shows real changes only).
    public static func hostJSON(functionTimeout: String = "00:10:00") -> JSONValue {
        .object([
            "version": .string("2.0"),
            "customHandler": .object([
                "description": .object([
                    "defaultExecutablePath": .string(executableName),
                    "workingDirectory": .string(""),
                    "arguments": .array([.string("serve")]),
                ]),
                // The current name of the option (the host's YARP proxy, which streams responses);
                // `enableForwardingHttpRequest` is its predecessor.
                "enableProxyingHttpRequest": .bool(true),
            ]),
            "extensions": .object(["http": .object(["routePrefix": .string("")])]),
            "extensionBundle": .object([
                "id": .string("Microsoft.Azure.Functions.ExtensionBundle"),
                "version": .string("[4.*, 5.0.0)"),
            ]),
            "functionTimeout": .string(functionTimeout),
            "logging": .object(["logLevel": .object(["default": .string("Information")])]),
        ])
    }

    /// Writes the layout into `outputDirectory`, which must be absent or empty unless `replace` is set.
    public static func write(
        manifest: FunctionManifest, binary: String, to outputDirectory: String, replace: Bool
    ) throws(PackageError) {
        let fileManager = FileManager.default
        let out = URL(fileURLWithPath: outputDirectory)
        do {
            if fileManager.fileExists(atPath: out.path) {
                let contents = try fileManager.contentsOfDirectory(atPath: out.path)
                if !contents.isEmpty {
                    guard replace else {
                        throw PackageError(description: "\(out.path) is not empty (use --force to replace it)")
                    }
                    try fileManager.removeItem(at: out)
                }
            }
            try fileManager.createDirectory(at: out, withIntermediateDirectories: true)
            try pretty(hostJSON()).write(to: out.appendingPathComponent("host.json"))
            for entry in manifest.entries {
                let folder = out.appendingPathComponent(entry.name)
                try fileManager.createDirectory(at: folder, withIntermediateDirectories: true)
                try pretty(entry.document).write(to: folder.appendingPathComponent("function.json"))
            }
            let target = out.appendingPathComponent(executableName)
            try fileManager.copyItem(at: URL(fileURLWithPath: binary), to: target)
            try fileManager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: target.path)
        } catch let error as PackageError {
            throw error
        } catch {
            throw PackageError(description: "cannot write the package to \(out.path): \(error.localizedDescription)")
        }
    }

    private static func pretty(_ value: JSONValue) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(value)
        data.append(UInt8(ascii: "\n"))
        return data
    }
}

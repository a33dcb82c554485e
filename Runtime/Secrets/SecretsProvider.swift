import Foundation
import Logging
import Synchronization

/// Where secret values come from. A provider answers nil when it does not hold the secret,
/// and throws when it cannot tell (denied, throttled, unreachable). Errors name the secret,
/// never a value.
public protocol SecretsProvider: Sendable {
    /// Describes the provider in messages (`env`, `files:/run/secrets`, `keyvault:https://…`).
    var name: String { get }
    func secret(named name: String) async throws(SecretsError) -> String?
}

public struct SecretsError: Error, Sendable, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Secrets from the app settings (environment, `local.settings.json`).
public struct EnvironmentSecretsProvider: SecretsProvider {
    let settings: Settings
    public var name: String { "env" }

    public init(settings: Settings) {
        self.settings = settings
    }

    public func secret(named name: String) async throws(SecretsError) -> String? {
        settings.nonEmpty(name)
    }
}

/// One file per secret, as Kubernetes and Docker mount them: `DIR/NAME` (else `DIR/name-with-dashes`),
/// trailing newline trimmed.
public struct DirectorySecretsProvider: SecretsProvider {
    let directory: URL
    public var name: String { "files:\(directory.path)" }

    public init(directory: String) {
        self.directory = URL(fileURLWithPath: directory)
    }

    public func secret(named name: String) async throws(SecretsError) -> String? {
        let candidates = [name, name.lowercased().replacingOccurrences(of: "_", with: "-")]
        for candidate in candidates {
            let path = directory.appendingPathComponent(candidate).path
            guard FileManager.default.fileExists(atPath: path) else { continue }
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw SecretsError("secret \(name): \(path) is not readable UTF-8 text")
            }
            let value = text.trimmingCharacters(in: .newlines)
            return value.isEmpty ? nil : value
        }
        return nil
    }
}

/// Caches another provider's answers and refetches them after `refreshInterval`, so a rotated
/// secret is picked up without a restart. When a refetch fails, the last value keeps serving.
public final class CachingSecretsProvider: SecretsProvider {
    private struct Entry {
        var value: String?
        var fetchedAt: ContinuousClock.Instant
    }

    private let inner: any SecretsProvider
    private let refreshInterval: Duration
    private let logger: Logger
    private let entries = Mutex<[String: Entry]>([:])

    public var name: String { inner.name }

    public init(_ inner: any SecretsProvider, refreshInterval: Duration, logger: Logger) {
        self.inner = inner
        self.refreshInterval = refreshInterval
        self.logger = logger
    }

    public func secret(named name: String) async throws(SecretsError) -> String? {
        let now = ContinuousClock.now
        let cached = entries.withLock { $0[name] }
        if let cached, now - cached.fetchedAt < refreshInterval { return cached.value }
        do {
            let value = try await inner.secret(named: name)
            entries.withLock { $0[name] = Entry(value: value, fetchedAt: now) }
            return value
        } catch {
            guard let cached else { throw error }
            logger.warning(
                "secret refresh failed; keeping the last value",
                metadata: ["secret": .string(name), "reason": .string(error.description)])
            return cached.value
        }
    }
}

/// The configured provider first, then the app settings; every value handed out is
/// registered with the redactor so it can never reach a log line.
public final class Secrets: Sendable {
    private let providers: [any SecretsProvider]
    private let redactor: SecretRedactor

    public init(providers: [any SecretsProvider], redactor: SecretRedactor) {
        self.providers = providers
        self.redactor = redactor
    }

    public var providerName: String { providers.first?.name ?? "env" }

    public func secret(named name: String) async throws(SecretsError) -> String? {
        for provider in providers {
            if let value = try await provider.secret(named: name) {
                redactor.register(value)
                return value
            }
        }
        return nil
    }
}

/// Secret values to mask in every log line (`[REDACTED]`), matched on their UTF-8 bytes: two secrets
/// that `String ==` calls equal (canonically equivalent) are two secrets, and the check that runs on
/// every log line is a byte scan, not Foundation's string search (it showed in the listing's profile).
public final class SecretRedactor: Sendable {
    private let values = Mutex<[[UInt8]]>([])
    private static let mask = Array("[REDACTED]".utf8)

    public init() {}

    public func register(_ value: String) {
        let bytes = Array(value.utf8)
        // Very short values would mask ordinary words; real secrets are longer.
        guard bytes.count >= 6 else { return }
        values.withLock { list in
            if !list.contains(bytes) { list.append(bytes) }
        }
    }

    public func redact(_ text: String) -> String {
        String(decoding: redact(bytes: Array(text.utf8)), as: UTF8.self)
    }

    /// `bytes` with every registered value replaced by `[REDACTED]`; `bytes` itself when none occurs.
    public func redact(bytes: [UInt8]) -> [UInt8] {
        let current = values.withLock { $0 }
        guard !current.isEmpty else { return bytes }
        let found = bytes.withUnsafeBufferPointer { line in current.contains { Self.firstIndex(of: $0, in: line) != nil } }
        guard found else { return bytes }
        var bytes = bytes
        for secret in current {
            var output: [UInt8] = []
            output.reserveCapacity(bytes.count)
            var start = 0
            while let index = bytes.withUnsafeBufferPointer({ Self.firstIndex(of: secret, in: UnsafeBufferPointer(rebasing: $0[start...])) }) {
                output.append(contentsOf: bytes[start..<(start + index)])
                output.append(contentsOf: Self.mask)
                start += index + secret.count
            }
            output.append(contentsOf: bytes[start...])
            bytes = output
        }
        return bytes
    }

    /// Where `needle` starts in `haystack` (bytes), first-byte prefilter then compare.
    static func firstIndex(of needle: [UInt8], in haystack: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let first = needle.first, needle.count <= haystack.count else { return nil }
        var index = 0
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == first {
                var matched = 1
                while matched < needle.count, haystack[index + matched] == needle[matched] { matched += 1 }
                if matched == needle.count { return index }
            }
            index += 1
        }
        return nil
    }
}

import Crypto
import Foundation
import FunctionRuntime

/// The checkpoint signer (docs/audit.md): C2SP `tlog-checkpoint` notes signed with Ed25519 under the
/// Go `sumdb/note` conventions. The key name is `AUDIT_LOG_ORIGIN`; the key id is the first four
/// bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
struct CheckpointSigner: Sendable {
    static let algorithmEd25519: UInt8 = 0x01
    static let defaultOrigin = "fnhost.local/audit"

    let name: String
    private let key: Curve25519.Signing.PrivateKey

    /// `seed`: the 32-byte Ed25519 seed (`AUDIT_SIGNING_KEY` is its base64).
    init(name: String, seed: [UInt8]) throws(ModuleConfigurationError) {
        guard Self.isValidName(name) else {
            throw ModuleConfigurationError("AUDIT_LOG_ORIGIN must be 1 to 200 bytes without spaces, '+' or control characters")
        }
        guard seed.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            throw ModuleConfigurationError("AUDIT_SIGNING_KEY must be the base64 of a 32-byte Ed25519 seed")
        }
        self.name = name
        self.key = key
    }

    /// `AUDIT_SIGNING_KEY` as configured: base64 of 32 bytes.
    static func seed(base64 text: String) -> [UInt8]? {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32 else { return nil }
        return Array(data)
    }

    static func generatedSeed() -> [UInt8] {
        Curve25519.Signing.PrivateKey().rawRepresentation.withUnsafeBytes { Array($0) }
    }

    /// A note key name: no whitespace, no `+`, printable, bounded.
    static func isValidName(_ name: String) -> Bool {
        (1...200).contains(name.utf8.count) && name.utf8.allSatisfy { $0 > 0x20 && $0 != 0x7F && $0 != 0x2B }
            && name.unicodeScalars.allSatisfy { !$0.properties.isWhitespace }
    }

    var publicKey: [UInt8] { Array(key.publicKey.rawRepresentation) }

    var keyID: [UInt8] { Self.keyID(name: name, publicKey: publicKey) }

    static func keyID(name: String, publicKey: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: Array(name.utf8) + [0x0A, algorithmEd25519] + publicKey).prefix(4))
    }

    /// `{name}+{key id, 8 hex digits}+{base64(0x01 ‖ public key)}`.
    var verifierKey: String {
        "\(name)+\(Hex.encode(keyID))+\(Data([Self.algorithmEd25519] + publicKey).base64EncodedString())"
    }

    /// The note text: origin line `{origin}/{chain id as a path segment}`, size, base64 root.
    static func body(origin: String, chainID: String, size: Int64, root: [UInt8]) -> String {
        "\(origin)/\(CacheKey.encode(chainID.utf8))\n\(size)\n\(Data(root).base64EncodedString())\n"
    }

    func sign(chainID: String, size: Int64, root: [UInt8]) throws -> String {
        let text = Self.body(origin: name, chainID: chainID, size: size, root: root)
        let signature = try key.signature(for: Array(text.utf8))
        return text + "\n\u{2014} \(name) \(Data(keyID + Array(signature)).base64EncodedString())\n"
    }
}

/// A checkpoint read back (from a tenant's file, or the database) and checked against a verifier key.
struct CheckpointNote: Sendable, Equatable {
    var origin: String
    var size: Int64
    var root: [UInt8]

    enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case badKey
        case noSignature

        var description: String {
            switch self {
            case .malformed(let reason): "the checkpoint is malformed: \(reason)"
            case .badKey: "the verifier key is malformed"
            case .noSignature: "no valid signature by the verifier key"
            }
        }
    }

    /// Parses `note` and checks that one of its signatures is by `verifierKey`.
    static func verified(_ note: String, verifierKey: String) throws(Failure) -> CheckpointNote {
        let key = try VerifierKey(verifierKey)
        let bytes = Array(note.utf8)
        guard bytes.count <= 64 * 1024 else { throw .malformed("larger than 64 KiB") }
        // The text ends at the first blank line; signature lines follow.
        guard let split = note.range(of: "\n\n") else { throw .malformed("no blank line before the signatures") }
        let text = String(note[..<split.lowerBound]) + "\n"
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        guard lines.count >= 3, let size = Int64(lines[1]), size >= 0, String(size) == lines[1],
            let root = Data(base64Encoded: String(lines[2])), root.count == 32
        else { throw .malformed("expected origin, tree size and a base64 root hash") }
        let signatures = note[split.upperBound...].split(separator: "\n", omittingEmptySubsequences: true)
        guard !signatures.isEmpty else { throw .noSignature }
        for line in signatures {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "\u{2014}", parts[1].utf8.elementsEqual(key.name.utf8),
                let raw = Data(base64Encoded: String(parts[2])), raw.count == 4 + 64, Array(raw.prefix(4)) == key.keyID
            else { continue }
            if key.publicKey.isValidSignature(raw.dropFirst(4), for: Array(text.utf8)) {
                return CheckpointNote(origin: String(lines[0]), size: size, root: Array(root))
            }
        }
        throw .noSignature
    }

    /// The chain id named by the origin line under `origin`, or nil when it names another log.
    func chainID(under origin: String) -> String? {
        let prefix = origin + "/"
        guard self.origin.utf8.starts(with: prefix.utf8) else { return nil }
        let rest = String(decoding: Array(self.origin.utf8.dropFirst(prefix.utf8.count)), as: UTF8.self)
        return CacheKey.decode(rest).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// `{name}+{key id hex}+{base64(0x01 ‖ 32-byte public key)}`.
struct VerifierKey: Sendable {
    let name: String
    let keyID: [UInt8]
    let publicKey: Curve25519.Signing.PublicKey

    init(_ text: String) throws(CheckpointNote.Failure) {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, CheckpointSigner.isValidName(String(parts[0])), let id = Hex.decode(parts[1]), id.count == 4,
            let raw = Data(base64Encoded: String(parts[2])), raw.count == 33, raw.first == CheckpointSigner.algorithmEd25519,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw.dropFirst())
        else { throw .badKey }
        guard CheckpointSigner.keyID(name: String(parts[0]), publicKey: Array(raw.dropFirst())) == id else { throw .badKey }
        name = String(parts[0])
        keyID = id
        publicKey = key
    }
}

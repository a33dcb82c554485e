import Crypto
import CryptoExtras
import Foundation
import FunctionRuntime
import Synchronization

/// The development host's state, kept in a project-local folder ignored by git
/// (`.fnhost/dev-host/` under the script root): its RSA signing key (and the previous one after
/// a rotation, so tokens already issued keep verifying) and a directory of tenants, users,
/// permissions and assurance that `fnhost token` writes and the running emulator reads.
struct DevHostStore: Sendable {
    static let issuer = "fnhost-dev-host"
    static let audience = "fnhost-module"

    struct User: Codable, Sendable, Equatable {
        var email: String
        var permissions: [String]
        var groups: [String]
        var mfa: Bool
    }

    struct Directory: Codable, Sendable, Equatable {
        /// tenant id → user id → user, both keys percent-encoded (`CacheKey.encode`), so two ids
        /// that differ in a byte never share an entry (a `String` key would merge canonical equivalents).
        var tenants: [String: [String: User]] = [:]

        func user(tenant: TenantID, user: UserID) -> User? {
            tenants[CacheKey.encode(tenant.text.utf8)]?[CacheKey.encode(user.text.utf8)]
        }

        mutating func setUser(tenant: TenantID, user: UserID, _ value: User) {
            tenants[CacheKey.encode(tenant.text.utf8), default: [:]][CacheKey.encode(user.text.utf8)] = value
        }
        /// While true the RBAC endpoint fails (to try degradation by hand).
        var rbacFailing = false
        /// While true the email endpoint fails (to watch the outbox queue and retry).
        var emailFailing: Bool?

        enum CodingKeys: String, CodingKey {
            case tenants
            case rbacFailing = "rbac_failing"
            case emailFailing = "email_failing"
        }
    }

    let folder: URL

    init(scriptRoot: String) {
        folder = URL(fileURLWithPath: scriptRoot).appendingPathComponent(".fnhost/dev-host")
    }

    private var keyFile: URL { folder.appendingPathComponent("signing-key.pem") }
    private var previousKeyFile: URL { folder.appendingPathComponent("previous-signing-key.pem") }
    private var directoryFile: URL { folder.appendingPathComponent("directory.json") }

    private func prepare() throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// The current signing key, created on first use.
    func signingKey() throws -> _RSA.Signing.PrivateKey {
        if let pem = try? String(contentsOf: keyFile, encoding: .utf8) {
            return try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        }
        try prepare()
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        try Data(key.pemRepresentation.utf8).write(to: keyFile, options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile.path)
        return key
    }

    /// Replaces the signing key; the old one stays published until the next rotation.
    func rotateKey() throws {
        let current = try signingKey()
        try Data(current.pemRepresentation.utf8).write(to: previousKeyFile, options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: previousKeyFile.path)
        try FileManager.default.removeItem(at: keyFile)
        _ = try signingKey()
    }

    static func kid(of key: _RSA.Signing.PublicKey) throws -> String {
        "dev-" + String(Hex.encode(SHA256.hash(data: try key.getKeyPrimitives().modulus)).prefix(16))
    }

    /// The JWKS: current key, and the previous one if any.
    func jwks() throws -> [UInt8] {
        var keys: [_RSA.Signing.PublicKey] = [try signingKey().publicKey]
        if let pem = try? String(contentsOf: previousKeyFile, encoding: .utf8), let previous = try? _RSA.Signing.PrivateKey(pemRepresentation: pem) {
            keys.append(previous.publicKey)
        }
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("keys")
        writer.beginArray()
        for key in keys {
            let primitives = try key.getKeyPrimitives()
            writer.comma()
            writer.beginObject()
            writer.field("kty", "RSA")
            writer.field("use", "sig")
            writer.field("alg", "RS256")
            writer.field("kid", try Self.kid(of: key))
            writer.field("n", Base64URL.encode(primitives.modulus))
            writer.field("e", Base64URL.encode(primitives.publicExponent))
            writer.endObject()
        }
        writer.endArray()
        writer.endObject()
        return writer.bytes
    }

    /// The message id the development host gives a request: the same tenant and key, the same id.
    static func messageID(tenant: String, idempotencyKey: String) -> String {
        "dev-msg-" + String(Hex.encode(SHA256.hash(data: Array((tenant + "\n" + idempotencyKey).utf8))).prefix(24))
    }

    private var sentEmailsFile: URL { folder.appendingPathComponent("sent-emails.jsonl") }

    /// Appends one JSON line per accepted send (tenant, key, message id, template, to).
    func recordSentEmail(_ request: EmailRequest, messageID: String) {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("tenant_id", request.tenantID.text)
        writer.field("idempotency_key", request.idempotencyKey)
        writer.field("message_id", messageID)
        writer.field("template", request.template)
        writer.field("to", request.to)
        writer.endObject()
        writer.newline()
        try? prepare()
        // O_APPEND: one write per line, so concurrent senders (tasks or processes) never interleave.
        let descriptor = open(sentEmailsFile.path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        _ = writer.bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }

    func directory() -> Directory {
        guard let data = try? Data(contentsOf: directoryFile), let directory = try? JSONDecoder().decode(Directory.self, from: data)
        else { return Directory() }
        return directory
    }

    func update(_ change: (inout Directory) -> Void) throws {
        try prepare()
        var directory = directory()
        change(&directory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(directory).write(to: directoryFile, options: .atomic)
    }

    /// An RS256 token the running emulator accepts (docs/security.md claims).
    func mint(tenant: String, user: String, email: String, mfa: Bool, groups: [String], superAdmin: Bool, ttl: Int, now: Date = Date()) throws -> String {
        let key = try signingKey()
        var header = JSONWriter()
        header.beginObject()
        header.field("alg", "RS256")
        header.field("kid", try Self.kid(of: key.publicKey))
        header.field("typ", "JWT")
        header.endObject()
        let issuedAt = Int(now.timeIntervalSince1970)
        var payload = JSONWriter()
        payload.beginObject()
        payload.field("iss", Self.issuer)
        payload.field("aud", Self.audience)
        payload.field("sub", user)
        payload.field("email", email)
        payload.field("tenant_id", tenant)
        payload.field("iat", issuedAt)
        payload.field("exp", issuedAt + ttl)
        payload.field("jti", UUID().uuidString.lowercased())
        payload.key("amr")
        payload.beginArray()
        for method in mfa ? ["pwd", "mfa"] : ["pwd"] {
            payload.comma()
            payload.string(method)
        }
        payload.endArray()
        if !groups.isEmpty {
            payload.key("groups")
            payload.beginArray()
            for group in groups {
                payload.comma()
                payload.string(group)
            }
            payload.endArray()
        }
        if superAdmin { payload.field("platform_super_admin", true) }
        payload.endObject()
        let signingInput = Base64URL.encode(header.bytes) + "." + Base64URL.encode(payload.bytes)
        let signature = try key.signature(for: SHA256.hash(data: Array(signingInput.utf8)), padding: .insecurePKCS1v1_5)
        return signingInput + "." + Base64URL.encode(signature.rawRepresentation)
    }
}

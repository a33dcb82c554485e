import FunctionRuntime
import JWTKit

/// The claims of a host-issued token (docs/security.md), decoded loosely so a missing claim is reported
/// as a reason rather than a decoding failure.
struct HostClaims: JWTPayload, Sendable {
    var iss: String?
    var aud: AudienceValue?
    var sub: String?
    var email: String?
    var tenantID: String?
    var exp: Double?
    var iat: Double?
    var nbf: Double?
    var amr: [String]?
    var groups: [String]?
    var platformSuperAdmin: Bool?
    /// The token's id, for revocation of one token (docs/operations.md).
    var jti: String?

    enum CodingKeys: String, CodingKey {
        case iss, aud, sub, email, exp, iat, nbf, amr, groups, jti
        case tenantID = "tenant_id"
        case platformSuperAdmin = "platform_super_admin"
    }

    /// `aud` as a string or an array of strings.
    enum AudienceValue: Codable, Sendable {
        case one(String)
        case many([String])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let one = try? container.decode(String.self) {
                self = .one(one)
            } else {
                self = .many(try container.decode([String].self))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .one(let value): try container.encode(value)
            case .many(let values): try container.encode(values)
            }
        }

        func contains(_ audience: String) -> Bool {
            switch self {
            case .one(let value): ByteText.equal(value, audience)
            case .many(let values): ByteText.contains(values, audience)
            }
        }
    }

    /// Claims are checked by `TokenVerifier` after the signature, with reason codes.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// A caller whose token verified: who they are and which tenant they act in.
struct Identity: Sendable, Equatable {
    let subject: UserID
    let email: String
    let tenantID: TenantID
    let amr: [String]
    let groups: [String]
    let platformSuperAdminClaim: Bool
    let expiresAt: Double
    /// `iat`: revocations cover tokens issued at or before a time.
    let issuedAt: Double
    /// `jti`, when the host gave one.
    let jti: String?
    /// SHA-256 of the token, hex; identifies the token in audit without storing it.
    let tokenHash: String
}

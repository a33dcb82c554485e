import Crypto
import Foundation
import FunctionRuntime
import JWTKit
import Logging
import Synchronization

/// Why a token was refused; logged and counted, never sent to the client.
enum TokenRejection: String, Sendable, Error {
    case missing = "token_missing"
    case notBearer = "not_bearer"
    case tooLarge = "token_too_large"
    case malformed = "token_malformed"
    case algorithmNotAllowed = "alg_not_allowed"
    case kidMissing = "kid_missing"
    case kidUnknown = "kid_unknown"
    case keysUnavailable = "jwks_unavailable"
    case signatureInvalid = "signature_invalid"
    case issuerMismatch = "iss_mismatch"
    case audienceMismatch = "aud_mismatch"
    case expired = "expired"
    case notYetValid = "not_yet_valid"
    case issuedInFuture = "iat_in_future"
    case lifetimeTooLong = "lifetime_too_long"
    case claimMissing = "claim_missing"
}

/// Validates host-issued bearer tokens (SPEC §5): RS256 only (the algorithm is never taken from
/// the token), `kid` required and looked up in the host JWKS, `iss`, `aud` (string or array),
/// `sub`, `email`, `tenant_id`, `exp`, `iat` required, `nbf` honoured, 60 s leeway,
/// `exp - iat` ≤ 4 h (and `exp - now` ≤ 4 h, so a far-future `exp` cannot slip through).
struct TokenVerifier: Sendable {
    static let maxTokenBytes = 8 * 1024
    static let maxLifetime: Double = 14_400
    static let leeway: Double = 60

    let jwks: JWKSCache
    let issuer: String
    let audience: String
    let now: @Sendable () -> Double

    init(jwks: JWKSCache, issuer: String, audience: String, now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.now = now
    }

    /// The token from an `Authorization` header value.
    static func bearerToken(_ header: String?) throws(TokenRejection) -> String {
        guard let header, !header.isEmpty else { throw .missing }
        guard header.count > 7, header.prefix(7).lowercased() == "bearer " else { throw .notBearer }
        let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty else { throw .missing }
        guard token.utf8.count <= maxTokenBytes else { throw .tooLarge }
        return token
    }

    func verify(_ token: String) async throws(TokenRejection) -> Identity {
        guard token.utf8.count <= Self.maxTokenBytes else { throw .tooLarge }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].isEmpty, let headerBytes = Base64URL.decode(parts[0]),
            let header = try? JSONDecoder().decode(JSONValue.self, from: Data(headerBytes)), case .object = header
        else { throw .malformed }
        guard header["alg"]?.stringValue == "RS256" else { throw .algorithmNotAllowed }
        guard let kid = header["kid"]?.stringValue, !kid.isEmpty else { throw .kidMissing }

        let keySet: JWKSCache.KeySet
        switch await jwks.keys(for: kid) {
        case .found(let set): keySet = set
        case .unknownKid: throw .kidUnknown
        case .unavailable: throw .keysUnavailable
        }
        let claims: HostClaims
        do {
            claims = try await keySet.keys.verify(token, as: HostClaims.self)
        } catch let error as JWTError where error.errorType == .malformedToken {
            throw .malformed
        } catch {
            throw .signatureInvalid
        }
        return try check(claims, token: token)
    }

    func check(_ claims: HostClaims, token: String) throws(TokenRejection) -> Identity {
        let now = now()
        guard let exp = claims.exp, let iat = claims.iat else { throw .claimMissing }
        guard let iss = claims.iss, iss == issuer else { throw .issuerMismatch }
        guard let aud = claims.aud, aud.contains(audience) else { throw .audienceMismatch }
        guard exp > now - Self.leeway else { throw .expired }
        guard iat <= now + Self.leeway else { throw .issuedInFuture }
        if let nbf = claims.nbf, nbf > now + Self.leeway { throw .notYetValid }
        guard exp - iat <= Self.maxLifetime, exp - now <= Self.maxLifetime + Self.leeway else { throw .lifetimeTooLong }
        guard let sub = claims.sub, !sub.isEmpty, let email = claims.email, !email.isEmpty,
            let tenant = claims.tenantID, !tenant.isEmpty
        else { throw .claimMissing }
        return Identity(
            subject: sub, email: email, tenantID: tenant, amr: claims.amr ?? [], groups: claims.groups ?? [],
            platformSuperAdminClaim: claims.platformSuperAdmin ?? false, expiresAt: exp,
            tokenHash: Hex.encode(SHA256.hash(data: Array(token.utf8))))
    }
}

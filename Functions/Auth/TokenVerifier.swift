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
    /// `tenant_id` or `sub` is not an id (docs/security.md: 1…128 bytes, no controls, `platform` reserved).
    case identifierInvalid = "identifier_invalid"
    /// Revoked through `POST /webhooks/sessions-revoked` (docs/operations.md).
    case revoked = "revoked"
    /// The revocations could not be read from the database lately: no token is accepted (503) until they are.
    case revocationsUnknown = "revocations_unknown"
}

/// Validates host-issued bearer tokens (docs/security.md): RS256 only (the algorithm is never taken from
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
    private let verified: VerifiedTokens
    /// Told about every token the first time it verifies (LOGIN_VALIDATED).
    let logins: LoginAudit?
    /// Consulted on every verification, cached or not (no I/O).
    let revocations: Revocations?

    init(
        jwks: JWKSCache, issuer: String, audience: String, logins: LoginAudit? = nil, revocations: Revocations? = nil,
        now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.jwks = jwks
        self.revocations = revocations
        self.logins = logins
        self.issuer = issuer
        self.audience = audience
        self.now = now
        verified = VerifiedTokens()
    }

    /// The token from an `Authorization` header value.
    static func bearerToken(_ header: String?) throws(TokenRejection) -> String {
        guard let header, !header.isEmpty else { throw .missing }
        let utf8 = header.utf8
        guard utf8.count > 7, utf8.prefix(7).elementsEqual("bearer ".utf8, by: { $0 | 0x20 == $1 }) else { throw .notBearer }
        let token = utf8.dropFirst(7).drop(while: { $0 == 0x20 || $0 == 0x09 })
        guard !token.isEmpty else { throw .missing }
        guard token.count <= maxTokenBytes else { throw .tooLarge }
        return String(Substring(token))
    }

    func verify(_ token: String) async throws(TokenRejection) -> Identity {
        guard token.utf8.count <= Self.maxTokenBytes else { throw .tooLarge }
        // A compact JWS is ASCII (base64url and dots). Checked on bytes before the cache lookup: the
        // cache is keyed by the token as a Swift String, whose equality is canonical equivalence, so a
        // copy with K written as KELVIN SIGN (U+212A) would otherwise hit the real token's entry.
        // On the contiguous bytes: `String.UTF8View`'s iterator cost ~1 % of the listing's CPU for a 700-byte token.
        var contiguous = token
        guard contiguous.withUTF8({ $0.allSatisfy(Self.isTokenByte) }) else { throw .malformed }
        let generation = jwks.generationNow
        if let revocations, !revocations.isCurrent, await !revocations.refresh() { throw .revocationsUnknown }
        if let identity = verified.lookup(token, now: now(), generation: generation) {
            if let revocations, revocations.isRevoked(identity) { throw .revoked }
            return identity
        }
        // The header is small (alg, kid, typ): bounded before it is decoded at all, and read flat.
        guard let header = TokenHeader(token: token) else { throw .malformed }
        guard header.alg == "RS256" else { throw .algorithmNotAllowed }
        guard let kid = header.kid, !kid.isEmpty else { throw .kidMissing }

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
        let identity = try check(claims, token: token)
        if let revocations, revocations.isRevoked(identity) { throw .revoked }
        verified.store(token, identity, now: now(), generation: keySet.generation)
        await logins?.observe(identity, now: now())
        return identity
    }

    /// base64url (`A-Z a-z 0-9 - _`, `=` tolerated) and the dots between the parts.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "="):
            true
        default: false
        }
    }

    func check(_ claims: HostClaims, token: String) throws(TokenRejection) -> Identity {
        let now = now()
        guard let exp = claims.exp, let iat = claims.iat else { throw .claimMissing }
        guard let iss = claims.iss, ByteText.equal(iss, issuer) else { throw .issuerMismatch }
        guard let aud = claims.aud, aud.contains(audience) else { throw .audienceMismatch }
        guard exp > now - Self.leeway else { throw .expired }
        guard iat <= now + Self.leeway else { throw .issuedInFuture }
        if let nbf = claims.nbf, nbf > now + Self.leeway { throw .notYetValid }
        guard exp - iat <= Self.maxLifetime, exp - now <= Self.maxLifetime + Self.leeway else { throw .lifetimeTooLong }
        guard let sub = claims.sub, !sub.isEmpty, let email = claims.email, !email.isEmpty,
            let tenantText = claims.tenantID, !tenantText.isEmpty
        else { throw .claimMissing }
        guard let tenant = TenantID(validating: tenantText), let subject = UserID(validating: sub) else { throw .identifierInvalid }
        return Identity(
            subject: subject, email: email, tenantID: tenant, amr: claims.amr ?? [], groups: claims.groups ?? [],
            platformSuperAdminClaim: claims.platformSuperAdmin ?? false, expiresAt: exp, issuedAt: iat, jti: claims.jti,
            tokenHash: Hex.encode(SHA256.hash(data: Array(token.utf8))))
    }
}

/// Tokens already verified, so a warm instance does not redo RSA for every request: an entry
/// lives until `min(exp, now + 60 s)` and only while the key set it was verified with is current
/// (a rotation or refresh clears the way). Bounded; cleared wholesale when full.
final class VerifiedTokens: Sendable {
    private struct Entry {
        let identity: Identity
        let validUntil: Double
        let generation: Int
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let capacity: Int
    private let lifetime: Double

    init(capacity: Int = 10_000, lifetime: Double = 60) {
        self.capacity = capacity
        self.lifetime = lifetime
    }

    func lookup(_ token: String, now: Double, generation: Int) -> Identity? {
        entries.withLock { map in
            guard let entry = map[token] else { return nil }
            guard entry.validUntil > now, entry.generation == generation else {
                map[token] = nil
                return nil
            }
            return entry.identity
        }
    }

    func store(_ token: String, _ identity: Identity, now: Double, generation: Int) {
        let validUntil = min(identity.expiresAt, now + lifetime)
        entries.withLock { map in
            if map.count >= capacity { map.removeAll(keepingCapacity: true) }
            map[token] = Entry(identity: identity, validUntil: validUntil, generation: generation)
        }
    }
}

#if canImport(FunctionRuntime)
import FunctionRuntime
#endif

/// The JOSE header of a compact JWS, read before anything else of a token: three segments, a
/// header segment of at most `maxEncodedBytes`, base64url, a flat JSON object (depth 1), `alg`
/// and `kid` strings. Linear in the token's size whatever its bytes.
struct TokenHeader: Sendable, Equatable {
    static let maxEncodedBytes = 1024

    let alg: String?
    let kid: String?

    /// nil when the token is not three segments with a readable header object.
    init?(token: String) {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].isEmpty, parts[0].count <= Self.maxEncodedBytes,
            let bytes = Base64URL.decode(Substring(String(decoding: parts[0], as: UTF8.self))),
            case .object(let object)? = try? JSONReader.parse(bytes, maxDepth: 1)
        else { return nil }
        alg = object["alg"]?.stringValue
        kid = object["kid"]?.stringValue
    }

    /// The payload segment's JSON object, for checks before the signature (fuzzed, bounded).
    static func payload(of token: String) -> [String: JSONValue]? {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3, let bytes = Base64URL.decode(Substring(String(decoding: parts[1], as: UTF8.self))) else { return nil }
        return try? JSONReader.object(bytes, maxDepth: 8)
    }
}

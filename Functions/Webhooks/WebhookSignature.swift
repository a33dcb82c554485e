import Crypto
import Foundation
import FunctionRuntime

/// Standard Webhooks v1 verification (docs/operations.md): `v1,BASE64(HMAC-SHA256(key, "{id}.{timestamp}.{raw body}"))`,
/// key = the base64-decoded part of a `whsec_` secret. Any configured secret may match any of the
/// space-separated signatures; comparisons are constant-time; the timestamp must be within the
/// tolerance in both directions. Checked over the raw body bytes, never a re-serialization.
struct WebhookSignature: Sendable {
    enum Rejection: String, Error, Sendable {
        case missingHeader = "missing_header"
        case badTimestamp = "bad_timestamp"
        case stale = "timestamp_outside_tolerance"
        case noSecret = "no_secret_configured"
        case mismatch = "signature_mismatch"
    }

    static let tolerance: Int64 = 300

    let keys: [[UInt8]]

    /// `WEBHOOK_HMAC_SECRET`: one or more `whsec_…` secrets separated by spaces (rotation). Entries
    /// that are not `whsec_` + base64 are ignored (a typo must not become an empty key).
    init(secrets: String?) {
        keys = (secrets ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).compactMap { entry in
            guard entry.hasPrefix("whsec_"), let key = Data(base64Encoded: String(entry.dropFirst(6))), !key.isEmpty else { return nil }
            return Array(key)
        }
    }

    static func sign(id: String, timestamp: String, body: [UInt8], key: [UInt8]) -> [UInt8] {
        var content = Array("\(id).\(timestamp).".utf8)
        content.append(contentsOf: body)
        return Array(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: key)))
    }

    func verify(id: String?, timestamp: String?, signatures: String?, body: [UInt8], now: Int64) throws(Rejection) {
        guard let id, !id.isEmpty, id.utf8.count <= 256, let timestamp, let signatures, !signatures.isEmpty else {
            throw .missingHeader
        }
        guard timestamp.utf8.count <= 12, timestamp.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let seconds = Int64(timestamp)
        else { throw .badTimestamp }
        guard abs(now - seconds) <= Self.tolerance else { throw .stale }
        guard !keys.isEmpty else { throw .noSecret }
        let candidates = SignatureHeader.candidates(signatures)
        var matched = false
        // Every key against every signature, without stopping early: timing says nothing about which matched.
        for key in keys {
            let expected = Self.sign(id: id, timestamp: timestamp, body: body, key: key)
            for candidate in candidates where ConstantTime.equals(expected, candidate) { matched = true }
        }
        guard matched else { throw .mismatch }
    }
}

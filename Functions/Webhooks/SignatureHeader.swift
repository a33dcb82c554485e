import Foundation

/// The `webhook-signature` header (Standard Webhooks): space-separated `v1,BASE64` entries. Parsed
/// on bytes (a `Character` split would glue a combining mark to the separator); other versions
/// and undecodable entries are skipped; at most `maxEntries` are considered.
enum SignatureHeader {
    static let maxEntries = 16

    static func candidates(_ header: String) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for part in header.utf8.split(separator: UInt8(ascii: " ")) where out.count < maxEntries {
            guard part.count > 3, part.starts(with: "v1,".utf8), part.count <= 4 * 1024 else { continue }
            let encoded = String(decoding: part.dropFirst(3), as: UTF8.self)
            guard let bytes = Data(base64Encoded: encoded) else { continue }
            out.append(Array(bytes))
        }
        return out
    }
}

import Foundation

/// The text of listing cursors, parsed on bytes (no `Character` may hide a separator or a digit):
/// leads `{µs}_{uuid}` (`^[0-9]{1,16}_<uuid>$`), audit `{µs}_{seq}_{chain_id}`.
enum CursorText {
    static func lead(_ text: String) -> (micros: Int64, id: String)? {
        let parts = text.utf8.split(separator: UInt8(ascii: "_"), maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let micros = digits(parts[0], max: 16), parts[1].count == 36 else { return nil }
        let id = String(decoding: parts[1], as: UTF8.self)
        guard UUID(uuidString: id) != nil else { return nil }
        return (micros, id.lowercased())
    }

    static func encodeLead(micros: Int64, id: String) -> String { "\(micros)_\(id)" }

    static func audit(_ text: String) -> (micros: Int64, seq: Int64, chain: String)? {
        let parts = text.utf8.split(separator: UInt8(ascii: "_"), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let micros = digits(parts[0], max: 16), let seq = digits(parts[1], max: 18), seq >= 1 else { return nil }
        guard let chain = String(validating: parts[2], as: UTF8.self) else { return nil }
        let count = parts[2].count
        guard count >= 1, count <= 128, !chain.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        else { return nil }
        return (micros, seq, chain)
    }

    /// 1…`max` ASCII digits (no sign, no spaces) as a non-negative number.
    private static func digits(_ bytes: Substring.UTF8View.SubSequence, max: Int) -> Int64? {
        guard (1...max).contains(bytes.count), bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return bytes.reduce(Int64(0)) { $0 * 10 + Int64($1 - 0x30) }
    }
}

/// The one encoder for composite keys (cache entries, rate-limit buckets, dedupe markers).
///
/// A key is `namespace:part:part…` where every part is percent-encoded on its UTF-8 bytes: only
/// `A-Z a-z 0-9 - . _ ~` stay as they are, every other byte becomes `%XX`. So
/// - no part can contain the separator, and no two distinct tuples of parts encode to one key
///   (`("t:a","b")` and `("t","a:b")` are `t%3Aa:b` and `t:a%3Ab`);
/// - a key is ASCII, so `String` equality and hashing on it are byte equality (canonically
///   equivalent ids stay two keys even in a `Dictionary<String, _>`);
/// - a key holds no Redis glob character, so a prefix is a literal `SCAN MATCH prefix*` pattern.
public enum CacheKey {
    /// `namespace:enc(part1):enc(part2)…`; `namespace` must itself be a plain ASCII word.
    public static func make(_ namespace: String, _ parts: [UInt8]...) -> String {
        make(namespace, parts: parts)
    }

    public static func make(_ namespace: String, parts: [[UInt8]]) -> String {
        var key = namespace
        for part in parts {
            key.append(":")
            key.append(encode(part))
        }
        return key
    }

    /// Every key of `make(namespace, parts + [anything…])` starts with this.
    public static func prefix(_ namespace: String, _ parts: [UInt8]...) -> String {
        make(namespace, parts: parts) + ":"
    }

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount + 8)
        for byte in bytes {
            if isUnreserved(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of one encoded part; nil when it is not the output of `encode`.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var out: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                let value = high << 4 | low
                guard !isUnreserved(value) else { return nil }
                out.append(value)
            } else {
                guard isUnreserved(byte) else { return nil }
                out.append(byte)
            }
        }
        return out
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

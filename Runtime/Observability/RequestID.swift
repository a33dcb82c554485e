import HTTPTypes
/// Request ids: the caller's `X-Request-Id` when it is sane, else a fresh random one.
public enum RequestIDs {
    /// The caller's `X-Request-Id` when it is sane, else a new one.
    public static func taken(from headers: HTTPFields) -> String {
        headers[.requestID].flatMap { isSane($0) ? $0 : nil } ?? generate()
    }

    /// 1–128 characters of `A-Z a-z 0-9 - _ . :` — enough for UUIDs and trace ids, nothing a log or header could be abused with.
    public static func isSane(_ candidate: String) -> Bool {
        var candidate = candidate
        return candidate.withUTF8 { utf8 in
            guard !utf8.isEmpty, utf8.count <= 128 else { return false }
            return utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                    UInt8(ascii: ":"):
                    true
                default: false
                }
            }
        }
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// A random version-4 UUID in lowercase text form.
    public static func generate() -> String {
        var bytes = RandomBytes.take(16)
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        var text = [UInt8]()
        text.reserveCapacity(36)
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// RFC 4180 cells for the export (docs/api.md), decided on bytes and Unicode scalars, never on
/// `Character`s: a grapheme such as `"\r\n"`, or `=` followed by a combining mark, is neither
/// `"\r"` nor `=` to Swift, but is to a CSV reader and a spreadsheet.
enum CSV {
    /// A leading `'` when the first Unicode scalar is `=`, `+`, `-` or `@`; quoted when any byte is
    /// a comma, a quote, CR or LF, with quotes doubled.
    static func cell(_ value: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(value.utf8.count + 3)
        let needsQuotes = value.utf8.contains { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 0x0A || $0 == 0x0D }
        if needsQuotes { bytes.append(UInt8(ascii: "\"")) }
        if let first = value.unicodeScalars.first, ["=", "+", "-", "@"].contains(first) { bytes.append(UInt8(ascii: "'")) }
        for byte in value.utf8 {
            bytes.append(byte)
            if byte == UInt8(ascii: "\"") { bytes.append(byte) }
        }
        if needsQuotes { bytes.append(UInt8(ascii: "\"")) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// One record: cells joined by commas, ended by CRLF.
    static func record(_ cells: [String]) -> String {
        cells.map(cell).joined(separator: ",") + "\r\n"
    }
}

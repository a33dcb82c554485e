/// Values that came in a token or a host answer (e-mails, groups, `amr`, `aud`, `iss`, assurance levels) compared as
/// the contract compares identifiers: on their UTF-8 bytes. Swift's `String ==` treats canonically equivalent text as
/// equal and `lowercased()` folds far beyond ASCII (KELVIN SIGN U+212A becomes `k`), so neither is used for them.
enum ByteText {
    /// The same bytes.
    static func equal(_ lhs: String, _ rhs: String) -> Bool { lhs.utf8.elementsEqual(rhs.utf8) }

    /// Some element of `list` has exactly the bytes of `value`.
    static func contains(_ list: [String], _ value: String) -> Bool {
        list.contains { equal($0, value) }
    }

    /// The bytes with ASCII letters `A`-`Z` folded to lower case and every other byte kept: `Ops@X` and `ops@x` fold
    /// alike, but no non-ASCII character ever folds to an ASCII one, and canonically equivalent spellings stay apart.
    static func asciiFolded(_ text: some StringProtocol) -> [UInt8] {
        text.utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 | 0x20 : $0 }
    }

    /// `text` without leading and trailing ASCII spaces and tabs.
    static func trimmedASCIISpace(_ text: some StringProtocol) -> Substring.UTF8View.SubSequence {
        let utf8 = Substring(text).utf8
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        guard let first = utf8.firstIndex(where: { !isSpace($0) }), let last = utf8.lastIndex(where: { !isSpace($0) }) else {
            return utf8[utf8.endIndex...]
        }
        return utf8[first...last]
    }
}

/// The staging super-admin list (`STAGING_PLATFORM_ADMIN_EMAILS`): entries trimmed of ASCII blanks, compared with the
/// token's `email` on bytes after folding ASCII letters only.
struct StagingAdminEmails: Sendable {
    private let entries: Set<[UInt8]>

    init(_ list: [String]) {
        entries = Set(list.map { ByteText.asciiFolded(String(Substring(ByteText.trimmedASCIISpace($0)))) }.filter { !$0.isEmpty })
    }

    var isEmpty: Bool { entries.isEmpty }

    func contains(_ email: String) -> Bool { entries.contains(ByteText.asciiFolded(email)) }
}

/// Opaque identifiers (docs/security.md): the exact UTF-8 bytes the host issued, compared, hashed and
/// ordered byte for byte. Swift `String` equality follows canonical equivalence (`"café"` in NFC
/// equals it in NFD), which is right for prose and wrong for ids: two ids that differ in one byte
/// are two tenants. The kinds do not mix (a `UserID` is not a `TenantID`) and nothing converts a
/// `String` implicitly; `text` is for binding into SQL and writing out, never for comparing.
struct Identifier<Kind: IdentifierKind>: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The id as received; read it to bind or print, never to compare.
    let text: String

    /// Validates the docs/security.md rules: 1…128 bytes of UTF-8, no control characters (C0, DEL, C1),
    /// and the kind's own reservations. `nil` when the text is not an id of this kind.
    init?(validating text: String) {
        guard Self.isWellFormed(text), !Kind.isReserved(text) else { return nil }
        self.text = text
    }

    /// An id read back from our own store, which only ever holds validated ids.
    init(trusted text: String) {
        self.text = text
    }

    static func isWellFormed(_ text: String) -> Bool {
        let count = text.utf8.count
        guard count >= 1, count <= 128 else { return false }
        return !text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }

    static func == (lhs: Self, rhs: Self) -> Bool { lhs.text.utf8.elementsEqual(rhs.text.utf8) }

    static func < (lhs: Self, rhs: Self) -> Bool { lhs.text.utf8.lexicographicallyPrecedes(rhs.text.utf8) }

    func hash(into hasher: inout Hasher) {
        hasher.combine(text.utf8.count)
        for byte in text.utf8 { hasher.combine(byte) }
    }

    var description: String { text }

    /// The UTF-8 bytes.
    var bytes: [UInt8] { Array(text.utf8) }
}

protocol IdentifierKind: Sendable {
    static func isReserved(_ text: String) -> Bool
}

enum TenantKind: IdentifierKind {
    /// `platform` names the platform audit chain; no tenant may carry it (compared on bytes).
    static func isReserved(_ text: String) -> Bool { text.utf8.elementsEqual(ChainID.platformName.utf8) }
}

enum UserKind: IdentifierKind {
    static func isReserved(_ text: String) -> Bool { false }
}

/// A tenant (the token's `tenant_id`).
typealias TenantID = Identifier<TenantKind>
/// A user of a tenant (the token's `sub`).
typealias UserID = Identifier<UserKind>

/// One audit chain: a tenant's, or the platform's. Equal on bytes like the ids.
enum ChainID: Sendable, Hashable, Comparable, CustomStringConvertible {
    case platform
    case tenant(TenantID)

    static let platformName = "platform"

    /// The chain a stored `chain_id` names.
    init(stored text: String) {
        self = text.utf8.elementsEqual(Self.platformName.utf8) ? .platform : .tenant(TenantID(trusted: text))
    }

    var text: String {
        switch self {
        case .platform: Self.platformName
        case .tenant(let tenant): tenant.text
        }
    }

    var tenant: TenantID? {
        if case .tenant(let tenant) = self { return tenant }
        return nil
    }

    var description: String { text }

    static func < (lhs: Self, rhs: Self) -> Bool { lhs.text.utf8.lexicographicallyPrecedes(rhs.text.utf8) }
}

/// Byte-exact comparison of wire values that are not ids (signatures, tokens, header values).
extension StringProtocol {
    func bytesEqual(_ other: some StringProtocol) -> Bool { utf8.elementsEqual(other.utf8) }
}

import Foundation
import FunctionRuntime

/// A lead as the API shows it (docs/api.md). Timestamps are kept as their RFC 3339 text with
/// microseconds (`2026-11-22T08:15:30.123456Z`), which sorts correctly and round-trips exactly.
struct Lead: Sendable, Equatable {
    var id: String
    var name: String
    var email: String
    var phone: String?
    var company: String?
    var status: String
    var notes: String?
    var createdBy: String
    var createdAt: String
    var updatedAt: String

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("id", id)
        writer.field("name", name)
        writer.field("email", email)
        writer.field("phone", phone)
        writer.field("company", company)
        writer.field("status", status)
        writer.field("notes", notes)
        writer.field("created_by", createdBy)
        writer.field("created_at", createdAt)
        writer.field("updated_at", updatedAt)
        writer.endObject()
    }

    static let csvHeader = "id,name,email,phone,company,status,notes,created_by,created_at,updated_at\r\n"

    /// One RFC 4180 record; cells starting with `=`, `+`, `-` or `@` get a leading `'`
    /// so a spreadsheet never evaluates them.
    func csvRecord() -> String {
        CSV.record([id, name, email, phone ?? "", company ?? "", status, notes ?? "", createdBy, createdAt, updatedAt])
    }

    static func csvCell(_ value: String) -> String { CSV.cell(value) }
}

/// Every limit on a lead's fields (docs/api.md), defined once: the request parser checks them before
/// the store, and the OpenAPI schemas state them. A length is counted in Unicode scalars — what
/// PostgreSQL's `char_length` and SQLite's `length` count — never in `Character`s: a name of 151
/// graphemes can be 301 scalars. The database's own checks (migration 1: name 1…200, notes ≤ 10,000,
/// status one of five) are these numbers, so a value the module accepts is never one the database
/// refuses (`StoreFailureTests.theModuleRefusesEveryValueTheDatabaseRefuses`).
enum LeadLimits {
    static let name = 200
    static let email = 254
    static let phone = 50
    static let company = 200
    static let notes = 10_000
    /// In the order the API lists them.
    static let statuses = ["new", "contacted", "qualified", "won", "lost"]

    /// The length the database counts: Unicode scalars.
    static func length(_ text: String) -> Int { text.unicodeScalars.count }

    /// 400 naming the field when `text` is over `maxLength` scalars.
    static func check(_ text: String, field: String, maxLength: Int) throws(FunctionError) {
        guard length(text) <= maxLength else {
            throw .validationFailed("field '\(field)' is longer than \(maxLength) characters (Unicode scalars)")
        }
    }

    /// One of `statuses`, compared on bytes (a status is a wire value, not text to normalize).
    static func isStatus(_ text: String) -> Bool {
        statuses.contains { $0.utf8.elementsEqual(text.utf8) }
    }
}

/// Fields a client may write; `tenant_id` is accepted and ignored (the tenant comes from the token).
struct LeadFields: Sendable, Equatable {
    enum Change<Value: Sendable & Equatable>: Sendable, Equatable {
        case unchanged
        case set(Value)
    }

    var name: Change<String> = .unchanged
    var email: Change<String> = .unchanged
    var phone: Change<String?> = .unchanged
    var company: Change<String?> = .unchanged
    var status: Change<String> = .unchanged
    var notes: Change<String?> = .unchanged

    var isEmpty: Bool { self == LeadFields() }

    /// The names of the fields this change sets (for the audit event; never their values).
    var names: [String] {
        func set<V>(_ change: Change<V>) -> Bool { if case .set = change { true } else { false } }
        return [("name", set(name)), ("email", set(email)), ("phone", set(phone)), ("company", set(company)),
                ("status", set(status)), ("notes", set(notes))].filter(\.1).map(\.0)
    }

    /// Parses and validates a JSON body; `creating` requires name and email and defaults status.
    static func parse(_ body: [UInt8], creating: Bool) throws(FunctionError) -> LeadFields {
        let document: JSONValue
        do {
            document = try JSONReader.parse(body)
        } catch {
            throw .invalidJSON(error, "body is not valid JSON")
        }
        guard case .object(let object) = document else { throw .validationFailed("body must be a JSON object") }
        var fields = LeadFields()
        for key in object.keys.sorted() {
            let value = object[key] ?? .null
            switch key {
            case "tenant_id":
                // Ignored (the tenant comes from the token), but still a string or null like any field.
                guard case .string = value else {
                    if case .null = value { continue }
                    throw .validationFailed("field 'tenant_id' must be a string or null (it is ignored)")
                }
                continue
            case "name": fields.name = .set(try required(value, field: key, maxLength: LeadLimits.name))
            case "email":
                let email = try required(value, field: key, maxLength: LeadLimits.email)
                guard isEmail(email) else { throw .validationFailed("field 'email' is not a valid email address") }
                fields.email = .set(email)
            case "phone": fields.phone = .set(try optional(value, field: key, maxLength: LeadLimits.phone))
            case "company": fields.company = .set(try optional(value, field: key, maxLength: LeadLimits.company))
            case "notes": fields.notes = .set(try optional(value, field: key, maxLength: LeadLimits.notes))
            case "status":
                guard case .string(let status) = value, LeadLimits.isStatus(status) else {
                    throw .validationFailed("field 'status' must be one of \(LeadLimits.statuses.joined(separator: ", "))")
                }
                fields.status = .set(status)
            default:
                throw .validationFailed("field '\(key)' is not allowed")
            }
        }
        if creating {
            guard case .set = fields.name else { throw .validationFailed("field 'name' is required") }
            guard case .set = fields.email else { throw .validationFailed("field 'email' is required") }
        }
        return fields
    }

    private static func required(_ value: JSONValue, field: String, maxLength: Int) throws(FunctionError) -> String {
        guard case .string(let text) = value else { throw .validationFailed("field '\(field)' must be a string") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw .validationFailed("field '\(field)' must not be empty") }
        try LeadLimits.check(text, field: field, maxLength: maxLength)
        return text
    }

    private static func optional(_ value: JSONValue, field: String, maxLength: Int) throws(FunctionError) -> String? {
        switch value {
        case .null: return nil
        case .string(let text):
            try LeadLimits.check(text, field: field, maxLength: maxLength)
            return text
        default: throw .validationFailed("field '\(field)' must be a string or null")
        }
    }

    /// A strict, byte-level address check (what common validators accept): local part of
    /// `A-Z a-z 0-9 . _ % + -` (1…64, no leading, trailing or doubled dot), `@`, a domain of at least
    /// two labels of `A-Z a-z 0-9 -` (no leading or trailing hyphen) with a final label of letters.
    /// `LeadsOpenAPI.emailPattern` describes a subset of it (so generated valid input always passes).
    static func isEmail(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let at = bytes.firstIndex(of: UInt8(ascii: "@")), bytes.lastIndex(of: UInt8(ascii: "@")) == at else { return false }
        let local = bytes[..<at]
        let domain = bytes[(at + 1)...]
        func alnum(_ byte: UInt8) -> Bool {
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
        }
        guard (1...64).contains(local.count), local.first != UInt8(ascii: "."), local.last != UInt8(ascii: "."),
            local.allSatisfy({ alnum($0) || [UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "%"), UInt8(ascii: "+"), UInt8(ascii: "-")].contains($0) }),
            !zip(local, local.dropFirst()).contains(where: { $0 == UInt8(ascii: ".") && $1 == UInt8(ascii: ".") })
        else { return false }
        let labels = domain.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard labels.count >= 2, domain.count <= 253,
            labels.allSatisfy({ (1...63).contains($0.count) && $0.first != UInt8(ascii: "-") && $0.last != UInt8(ascii: "-")
                && $0.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") } }),
            let last = labels.last, last.allSatisfy({ (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) })
        else { return false }
        return true
    }
}

/// Keyset pagination position: `{created_at in microseconds since 1970}_{id}`. Every string the
/// pattern `^[0-9]{1,16}_<uuid>$` admits is a valid position (16 digits stay below year 2286), so
/// the OpenAPI schema describes it exactly; anything else is 400.
struct LeadCursor: Sendable, Equatable {
    static let pattern = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

    let createdAt: String
    let id: String

    init(createdAt: String, id: String) {
        self.createdAt = createdAt
        self.id = id
    }

    var encoded: String { "\(Timestamps.microseconds(createdAt) ?? 0)_\(id)" }

    init(decoding text: String) throws(FunctionError) {
        guard let (micros, id) = CursorText.lead(text) else { throw .validationFailed("parameter 'cursor' is not a valid cursor") }
        createdAt = Timestamps.format(seconds: micros / 1_000_000, microseconds: Int(micros % 1_000_000))
        self.id = id
    }
}

enum LeadID {
    /// Lowercase canonical UUID text.
    static func isValid(_ text: String) -> Bool {
        text.utf8.count == 36 && text == text.lowercased() && UUID(uuidString: text) != nil
    }

    /// A path `{id}`: 400 when malformed (an unknown well-formed id is a 404 later).
    static func parse(_ text: String?) throws(FunctionError) -> String {
        guard let text, UUID(uuidString: text) != nil, text.utf8.count == 36 else {
            throw .validationFailed("parameter 'id' must be a UUID")
        }
        return text.lowercased()
    }
}

enum Timestamps {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, exactly six fraction digits).
    static func now() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return format(seconds: Int64(spec.tv_sec), microseconds: Int(spec.tv_nsec / 1000))
    }

    static func format(seconds: Int64, microseconds: Int) -> String {
        Timestamp.format(seconds: seconds, nanoseconds: microseconds * 1000, fractionDigits: 6)
    }

    /// Microseconds since 1970 of a canonical timestamp (by arithmetic: Foundation's calendar cost
    /// ~1 % of the listing's CPU, for the next page's cursor).
    static func microseconds(_ text: String) -> Int64? {
        guard isCanonical(text) else { return nil }
        let utf8 = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int { utf8[range].reduce(0) { $0 * 10 + Int($1 - 0x30) } }
        let seconds = Civil(
            year: number(0..<4), month: number(5..<7), day: number(8..<10), hour: number(11..<13), minute: number(14..<16),
            second: number(17..<19)
        ).seconds
        return seconds * 1_000_000 + Int64(number(20..<26))
    }

    static func isCanonical(_ text: String) -> Bool {
        let utf8 = Array(text.utf8)
        guard utf8.count == 27, utf8[4] == 0x2D, utf8[7] == 0x2D, utf8[10] == 0x54, utf8[13] == 0x3A, utf8[16] == 0x3A,
            utf8[19] == 0x2E, utf8[26] == 0x5A
        else { return false }
        for index in [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25] {
            guard utf8[index] >= 0x30, utf8[index] <= 0x39 else { return false }
        }
        return true
    }
}

extension Timestamps {
    /// An RFC 3339 `date-time` (any offset, any fraction) as a canonical UTC timestamp, truncated to
    /// microseconds and clamped to 1970…9999; nil when it is not one.
    static func canonical(rfc3339 text: String) -> String? {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 20, utf8.count <= 40 else { return nil }
        func digits(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= utf8.count else { return nil }
            var value = 0
            for byte in utf8[range] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard let year = digits(0..<4), utf8[4] == 0x2D, let month = digits(5..<7), utf8[7] == 0x2D, let day = digits(8..<10),
            utf8[10] == 0x54 || utf8[10] == 0x74, let hour = digits(11..<13), utf8[13] == 0x3A, let minute = digits(14..<16),
            utf8[16] == 0x3A, let second = digits(17..<19),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var index = 19
        var micros = 0
        if utf8[index] == 0x2E {
            index += 1
            let start = index
            while index < utf8.count, utf8[index] >= 0x30, utf8[index] <= 0x39 {
                if index - start < 6 { micros = micros * 10 + Int(utf8[index] - 0x30) }
                index += 1
            }
            guard index > start else { return nil }
            for _ in 0..<max(0, 6 - (index - start)) { micros *= 10 }
        }
        var offsetMinutes = 0
        guard index < utf8.count else { return nil }
        if utf8[index] == 0x5A || utf8[index] == 0x7A {
            index += 1
        } else {
            guard utf8[index] == 0x2B || utf8[index] == 0x2D, let offsetHour = digits(index + 1..<index + 3),
                index + 3 < utf8.count, utf8[index + 3] == 0x3A, let offsetMinute = digits(index + 4..<index + 6),
                offsetHour < 24, offsetMinute < 60
            else { return nil }
            offsetMinutes = (offsetHour * 60 + offsetMinute) * (utf8[index] == 0x2D ? -1 : 1)
            index += 6
        }
        guard index == utf8.count else { return nil }
        guard day <= Civil.daysInMonth(year: year, month: month) else { return nil }  // no 31 February
        let seconds = Civil(year: year, month: month, day: day, hour: hour, minute: minute, second: min(second, 59)).seconds
            - Int64(offsetMinutes * 60)
        let clamped = min(max(seconds, 0), 253_402_300_799)
        return format(seconds: clamped, microseconds: clamped == seconds ? micros : 0)
    }
}

extension Timestamps {
    static func nowMicroseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec / 1000)
    }

    static func string(microseconds: Int64) -> String {
        let clamped = max(0, microseconds)
        return format(seconds: clamped / 1_000_000, microseconds: Int(clamped % 1_000_000))
    }
}

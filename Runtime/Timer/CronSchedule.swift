import Foundation

/// An NCRONTAB expression with Azure Functions' semantics
/// (`{second} {minute} {hour} {day} {month} {day-of-week}`; exactly five fields means no seconds).
///
/// Per field: `*`, `n`, `a-b`, lists, and steps (`*/n`, `a-b/n`, `a/n` = from a to the field's maximum).
/// Months and days of week also take names, matched as case-insensitive prefixes of the full
/// name, first in calendar order (`M` = March, `T` = Tuesday). Day of week runs 0–6, Sunday = 0.
/// Day of month and day of week must both match (NCrontab's AND, not Vixie cron's OR).
public struct CronSchedule: Sendable, Hashable, CustomStringConvertible {
    public let expression: String
    public let hasSeconds: Bool
    let seconds: UInt64
    let minutes: UInt64
    let hours: UInt64
    let days: UInt64
    let months: UInt64
    let weekdays: UInt64

    public var description: String { expression }

    static let monthNames = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
        "November", "December",
    ]
    static let dayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    public init(parsing expression: String) throws(CronScheduleError) {
        self.expression = expression
        let fields = expression.split(whereSeparator: { $0 == " " || $0 == "\t" })
        switch fields.count {
        case 6:
            hasSeconds = true
            seconds = try Self.parseField(fields[0], name: "second", range: 0...59)
        case 5:
            hasSeconds = false
            seconds = 1
        default:
            throw CronScheduleError("expected 6 fields (second minute hour day month day-of-week), found \(fields.count)")
        }
        let rest = fields.suffix(5).map { $0 }
        minutes = try Self.parseField(rest[0], name: "minute", range: 0...59)
        hours = try Self.parseField(rest[1], name: "hour", range: 0...23)
        days = try Self.parseField(rest[2], name: "day", range: 1...31)
        months = try Self.parseField(rest[3], name: "month", range: 1...12, names: Self.monthNames, firstNameValue: 1)
        weekdays = try Self.parseField(rest[4], name: "day-of-week", range: 0...6, names: Self.dayNames, firstNameValue: 0)
    }

    // MARK: Parsing

    private static func parseField(
        _ field: Substring, name: String, range: ClosedRange<Int>, names: [String] = [], firstNameValue: Int = 0
    ) throws(CronScheduleError) -> UInt64 {
        var bits: UInt64 = 0
        for element in field.split(separator: ",", omittingEmptySubsequences: false) {
            guard !element.isEmpty else { throw CronScheduleError("\(name) field '\(field)' has an empty list element") }
            var rangePart = element
            var step = 1
            if let slash = element.firstIndex(of: "/") {
                let stepText = element[element.index(after: slash)...]
                guard let parsed = Int(stepText), parsed > 0 else {
                    throw CronScheduleError("\(name) field '\(field)': step '\(stepText)' must be a positive number")
                }
                step = parsed
                rangePart = element[..<slash]
            }
            let low: Int
            let high: Int
            if rangePart == "*" {
                low = range.lowerBound
                high = range.upperBound
            } else if let dash = rangePart.firstIndex(of: "-") {
                low = try value(rangePart[..<dash], field: field, name: name, range: range, names: names, first: firstNameValue)
                high = try value(
                    rangePart[rangePart.index(after: dash)...], field: field, name: name, range: range, names: names,
                    first: firstNameValue)
                guard low <= high else {
                    throw CronScheduleError("\(name) field '\(field)': range \(rangePart) runs backwards")
                }
            } else {
                low = try value(rangePart, field: field, name: name, range: range, names: names, first: firstNameValue)
                // `a/n` means from a to the field's maximum every n; a bare `a` is just a.
                high = element.contains("/") ? range.upperBound : low
            }
            var current = low
            while current <= high {
                bits |= 1 << UInt64(current)
                current += step
            }
        }
        return bits
    }

    private static func value(
        _ token: Substring, field: Substring, name: String, range: ClosedRange<Int>, names: [String], first: Int
    ) throws(CronScheduleError) -> Int {
        guard let head = token.first else {
            throw CronScheduleError("\(name) field '\(field)' has an empty value")
        }
        if head.isNumber {
            guard let number = Int(token), range.contains(number) else {
                throw CronScheduleError(
                    "\(name) field '\(field)': '\(token)' is outside \(range.lowerBound)-\(range.upperBound)")
            }
            return number
        }
        let lowered = token.lowercased()
        if let index = names.firstIndex(where: { $0.lowercased().hasPrefix(lowered) }) {
            return index + first
        }
        throw CronScheduleError("\(name) field '\(field)': '\(token)' is not a number\(names.isEmpty ? "" : " or a name")")
    }

    // MARK: Matching

    /// Whether the given wall-clock fields are an occurrence (weekday 0 = Sunday).
    func matches(second: Int, minute: Int, hour: Int, day: Int, month: Int, weekday: Int) -> Bool {
        Self.has(seconds, second) && Self.has(minutes, minute) && Self.has(hours, hour) && Self.has(days, day)
            && Self.has(months, month) && Self.has(weekdays, weekday)
    }

    /// The first occurrence strictly after `date`, in whole seconds of the given time zone's wall clock.
    ///
    /// A wall-clock time that does not exist (a DST gap) is skipped; one that occurs twice
    /// (DST fall-back) fires once, at its first instant after `date`. Returns nil if the
    /// schedule never fires in the next 30 years (e.g. `0 0 0 30 2 *`).
    public func next(after date: Date, in timeZone: TimeZone = .gmt) -> Date? {
        let start = Int64(date.timeIntervalSince1970.rounded(.down)) + 1
        let isUTC = timeZone.secondsFromGMT() == 0 && timeZone.nextDaylightSavingTimeTransition == nil
        var local = isUTC ? start : start + Int64(timeZone.secondsFromGMT(for: Date(seconds: start)))
        let limit = Civil(seconds: local).year + 30
        while true {
            guard let candidate = nextLocalMatch(atOrAfter: local, yearLimit: limit) else { return nil }
            if isUTC { return Date(seconds: candidate) }
            if let instant = Self.instant(forLocal: candidate, in: timeZone, notBefore: start) {
                return Date(seconds: instant)
            }
            local = candidate + 1
        }
    }

    /// The first wall-clock second at or after `local` that matches, searching field by field.
    private func nextLocalMatch(atOrAfter local: Int64, yearLimit: Int) -> Int64? {
        var c = Civil(seconds: local)
        while c.year <= yearLimit {
            if !Self.has(months, c.month) {
                c.month += 1
                if c.month > 12 { c.month = 1; c.year += 1 }
                c.day = 1; c.hour = 0; c.minute = 0; c.second = 0
                continue
            }
            if c.day > Civil.daysInMonth(year: c.year, month: c.month) {
                c.month += 1
                if c.month > 12 { c.month = 1; c.year += 1 }
                c.day = 1; c.hour = 0; c.minute = 0; c.second = 0
                continue
            }
            if !Self.has(days, c.day) || !Self.has(weekdays, Civil.weekday(year: c.year, month: c.month, day: c.day)) {
                c.day += 1; c.hour = 0; c.minute = 0; c.second = 0
                continue
            }
            guard let hour = Self.first(hours, atOrAfter: c.hour) else {
                c.day += 1; c.hour = 0; c.minute = 0; c.second = 0
                continue
            }
            if hour != c.hour { c.hour = hour; c.minute = 0; c.second = 0 }
            guard let minute = Self.first(minutes, atOrAfter: c.minute) else {
                c.hour += 1; c.minute = 0; c.second = 0
                if c.hour > 23 { c.hour = 0; c.day += 1 }
                continue
            }
            if minute != c.minute { c.minute = minute; c.second = 0 }
            guard let second = Self.first(seconds, atOrAfter: c.second) else {
                c.minute += 1; c.second = 0
                if c.minute > 59 { c.minute = 0; c.hour += 1 }
                if c.hour > 23 { c.hour = 0; c.day += 1 }
                continue
            }
            c.second = second
            return c.seconds
        }
        return nil
    }

    /// The earliest instant at or after `notBefore` whose wall clock in `timeZone` reads `local`, if any.
    static func instant(forLocal local: Int64, in timeZone: TimeZone, notBefore: Int64) -> Int64? {
        let offsets = [
            Int64(timeZone.secondsFromGMT(for: Date(seconds: local - 86_400))),
            Int64(timeZone.secondsFromGMT(for: Date(seconds: local))),
            Int64(timeZone.secondsFromGMT(for: Date(seconds: local + 86_400))),
        ]
        var best: Int64?
        for offset in offsets {
            let instant = local - offset
            guard instant >= notBefore,
                instant + Int64(timeZone.secondsFromGMT(for: Date(seconds: instant))) == local
            else { continue }
            if best == nil || instant < best.unsafelyUnwrapped { best = instant }
        }
        return best
    }

    private static func has(_ bits: UInt64, _ value: Int) -> Bool {
        value >= 0 && value < 64 && bits & (1 << UInt64(value)) != 0
    }

    private static func first(_ bits: UInt64, atOrAfter value: Int) -> Int? {
        guard value < 64 else { return nil }
        let masked = bits & (~UInt64(0) << UInt64(value))
        return masked == 0 ? nil : masked.trailingZeroBitCount
    }
}

public struct CronScheduleError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Proleptic Gregorian wall-clock fields for seconds since the Unix epoch (no time zone), converted
/// both ways by arithmetic alone (no Foundation calendar on hot paths).
public struct Civil: Equatable, Sendable {
    public var year: Int
    public var month: Int
    public var day: Int
    public var hour: Int
    public var minute: Int
    public var second: Int

    public init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    public init(seconds: Int64) {
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        self.init(
            year: yoe + era * 400 + (month <= 2 ? 1 : 0), month: month, day: day,
            hour: secondOfDay / 3600, minute: secondOfDay % 3600 / 60, second: secondOfDay % 60)
    }

    public var seconds: Int64 {
        Int64(Self.daysFromCivil(year: year, month: month, day: day)) * 86_400
            + Int64(hour * 3600 + minute * 60 + second)
    }

    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    public static func isLeap(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// 0 = Sunday.
    static func weekday(year: Int, month: Int, day: Int) -> Int {
        let days = daysFromCivil(year: year, month: month, day: day)
        return ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday (4)
    }
}

extension Date {
    init(seconds: Int64) {
        self.init(timeIntervalSince1970: TimeInterval(seconds))
    }
}

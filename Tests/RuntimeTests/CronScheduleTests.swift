import Foundation
import TestSupport
import Testing

@testable import FunctionRuntime

@Suite struct CronScheduleParsingTests {
    @Test(arguments: [
        "0 */5 * * * *", "0 0 */2 * * *", "0 0 9-17 * * *", "0 30 9 * * 1-5", "0 30 9 * Jan Mon",
        "*/15 * * * * *", "0 0 2 * * *", "5,10,15-20/2 * * * * *", "0 0 0 1 1 *", "0 0 12 * * Mon-Fri",
        "0 0 12 * * sun", "0 0 0 * Mar-May *", "30 * * * *", "0 0 * * 0",
    ])
    func acceptsAzureExpressions(_ expression: String) throws {
        let schedule = try CronSchedule(parsing: expression)
        #expect(schedule.expression == expression)
    }

    @Test(arguments: [
        ("", "expected 6 fields"),
        ("* * * *", "expected 6 fields"),
        ("* * * * * * *", "expected 6 fields"),
        ("60 * * * * *", "second field"),
        ("* 60 * * * *", "minute field"),
        ("* * 24 * * *", "hour field"),
        ("* * * 0 * *", "day field"),
        ("* * * 32 * *", "day field"),
        ("* * * * 13 *", "month field"),
        ("* * * * * 7", "day-of-week field"),
        ("*/0 * * * * *", "step"),
        ("5-1 * * * * *", "runs backwards"),
        ("1,,2 * * * * *", "empty list element"),
        ("* * * * Foo *", "not a number or a name"),
        ("x * * * * *", "not a number"),
        ("-5 * * * * *", "empty value"),
        ("L * * * * *", "not a number"),
    ])
    func rejectsMalformedExpressions(_ expression: String, _ reason: String) {
        #expect {
            _ = try CronSchedule(parsing: expression)
        } throws: { error in
            String(describing: error).contains(reason)
        }
    }

    @Test func stepFromValueRunsToTheFieldMaximum() throws {
        let schedule = try CronSchedule(parsing: "50/3 * * * * *")
        #expect(schedule.seconds == (1 << 50 | 1 << 53 | 1 << 56 | 1 << 59))
    }

    @Test func namesArePrefixesInCalendarOrder() throws {
        // "M" is March (not May), "T" is Tuesday (not Thursday), as NCrontab resolves them.
        let schedule = try CronSchedule(parsing: "0 0 0 * M T")
        #expect(schedule.months == 1 << 3)
        #expect(schedule.weekdays == 1 << 2)
        let upper = try CronSchedule(parsing: "0 0 0 * DECEMBER SATURDAY")
        #expect(upper.months == 1 << 12)
        #expect(upper.weekdays == 1 << 6)
    }

    @Test func fiveFieldsMeanSecondZero() throws {
        let schedule = try CronSchedule(parsing: "*/10 * * * *")
        #expect(!schedule.hasSeconds)
        let start = date("2026-11-22T08:00:00Z")
        #expect(schedule.next(after: start) == date("2026-11-22T08:10:00Z"))
    }
}

@Suite struct CronScheduleOccurrenceTests {
    @Test func nextIsStrictlyAfterInWholeSeconds() throws {
        let everySecond = try CronSchedule(parsing: "* * * * * *")
        #expect(everySecond.next(after: date("2026-11-22T08:00:00Z")) == date("2026-11-22T08:00:01Z"))
        let fractional = date("2026-11-22T08:00:00Z").addingTimeInterval(0.5)
        #expect(everySecond.next(after: fractional) == date("2026-11-22T08:00:01Z"))
    }

    @Test func knownOccurrences() throws {
        let cases: [(String, String, String)] = [
            ("0 */5 * * * *", "2026-11-22T08:03:10Z", "2026-11-22T08:05:00Z"),
            ("0 0 2 * * *", "2026-11-22T02:00:00Z", "2026-11-23T02:00:00Z"),
            ("0 30 9 * * 1-5", "2026-11-21T10:00:00Z", "2026-11-23T09:30:00Z"),  // Saturday → Monday
            ("0 30 9 * Jan Mon", "2026-11-22T00:00:00Z", "2027-01-04T09:30:00Z"),
            ("0 0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            ("0 0 0 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z"),
            // Day of month AND day of week: Friday the 13th.
            ("0 0 0 13 * 5", "2026-01-01T00:00:00Z", "2026-02-13T00:00:00Z"),
            ("59 59 23 31 12 *", "2026-12-31T23:59:58Z", "2026-12-31T23:59:59Z"),
            ("59 59 23 31 12 *", "2026-12-31T23:59:59Z", "2027-12-31T23:59:59Z"),
        ]
        for (expression, start, expected) in cases {
            let schedule = try CronSchedule(parsing: expression)
            #expect(schedule.next(after: date(start)) == date(expected), "\(expression) after \(start)")
        }
    }

    @Test func impossibleScheduleNeverFires() throws {
        let schedule = try CronSchedule(parsing: "0 0 0 30 2 *")
        #expect(schedule.next(after: date("2026-01-01T00:00:00Z")) == nil)
    }

    @Test func springForwardGapIsSkipped() throws {
        let zone = try #require(TimeZone(identifier: "America/New_York"))
        let schedule = try CronSchedule(parsing: "0 30 2 * * *")
        // 2026-03-08 02:30 does not exist in New York; the next 02:30 is on the 9th (EDT, UTC-4).
        #expect(schedule.next(after: date("2026-03-08T06:00:00Z"), in: zone) == date("2026-03-09T06:30:00Z"))
    }

    @Test func fallBackAmbiguousTimeFiresOnce() throws {
        let zone = try #require(TimeZone(identifier: "America/New_York"))
        let schedule = try CronSchedule(parsing: "0 30 1 * * *")
        let first = try #require(schedule.next(after: date("2026-11-01T04:00:00Z"), in: zone))
        #expect(first == date("2026-11-01T05:30:00Z"))  // 01:30 EDT
        #expect(schedule.next(after: first, in: zone) == date("2026-11-02T06:30:00Z"))  // next day, EST
    }

    @Test func localTimeZoneShiftsOccurrences() throws {
        let zone = try #require(TimeZone(identifier: "Europe/Berlin"))
        let schedule = try CronSchedule(parsing: "0 0 9 * * *")
        #expect(schedule.next(after: date("2026-11-22T00:00:00Z"), in: zone) == date("2026-11-22T08:00:00Z"))
        #expect(schedule.next(after: date("2026-07-01T00:00:00Z"), in: zone) == date("2026-07-01T07:00:00Z"))
    }
}

/// Property test: for random expressions and start times, `next(after:)` equals the first
/// second found by an exhaustive walk that evaluates each field with a separate, naive reading
/// of the NCRONTAB rules and Foundation's calendar (sharing no code with the parser).
@Suite struct CronSchedulePropertyTests {
    @Test func matchesBruteForceWalk() throws {
        var random = SplitMix64(seed: 0x5EED_CAFE)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        for round in 0..<400 {
            let withSeconds = random.next() % 4 != 0
            var fields: [String] = []
            if withSeconds { fields.append(Self.randomField(&random, 0...59, names: [])) }
            fields.append(Self.randomField(&random, 0...59, names: []))
            fields.append(Self.randomField(&random, 0...23, names: []))
            fields.append(Self.randomField(&random, 1...31, names: [], sparse: true))
            fields.append(Self.randomField(&random, 1...12, names: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], sparse: true))
            fields.append(Self.randomField(&random, 0...6, names: ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"], sparse: true))
            let expression = fields.joined(separator: " ")
            let schedule = try CronSchedule(parsing: expression)
            let start = Date(timeIntervalSince1970: 1_700_000_000 + Double(random.next() % 200_000_000) + Double(random.next() % 1000) / 1000)
            let expected = Self.bruteForceNext(fields: fields, after: start, calendar: calendar, horizonDays: 366 * 6)
            let actual = schedule.next(after: start)
            if let expected {
                #expect(actual == expected, "round \(round): '\(expression)' after \(start)")
            } else if let actual {
                #expect(actual.timeIntervalSince(start) > Double(366 * 6 * 86_400), "round \(round): '\(expression)'")
            }
        }
    }

    static func randomField(_ random: inout SplitMix64, _ range: ClosedRange<Int>, names: [String], sparse: Bool = false) -> String {
        func value() -> String {
            let number = range.lowerBound + Int(random.next() % UInt64(range.count))
            if !names.isEmpty, random.next() % 3 == 0 { return names[number - range.lowerBound] }
            return String(number)
        }
        func element() -> String {
            switch random.next() % 6 {
            case 0: return "*/\(1 + random.next() % 7)"
            case 1: return value()
            case 2:
                let a = range.lowerBound + Int(random.next() % UInt64(range.count))
                let b = a + Int(random.next() % UInt64(range.upperBound - a + 1))
                return "\(a)-\(b)"
            case 3:
                let a = range.lowerBound + Int(random.next() % UInt64(range.count))
                let b = a + Int(random.next() % UInt64(range.upperBound - a + 1))
                return "\(a)-\(b)/\(1 + random.next() % 5)"
            case 4: return "\(range.lowerBound + Int(random.next() % UInt64(range.count)))/\(1 + random.next() % 9)"
            default: return "\(element()),\(element())"
            }
        }
        if sparse, random.next() % 3 != 0 { return "*" }
        return random.next() % 5 == 0 ? "*" : element()
    }

    /// The naive reading: a value matches an element when it lies in the element's range and
    /// its distance from the range start is a multiple of the step.
    static func naiveMatches(_ field: String, _ value: Int, _ range: ClosedRange<Int>, names: [String]) -> Bool {
        func parse(_ token: Substring) -> Int {
            if let number = Int(token) { return number }
            let index = names.firstIndex { $0.lowercased().hasPrefix(token.lowercased()) } ?? 0
            return index + range.lowerBound
        }
        for element in field.split(separator: ",") {
            let parts = element.split(separator: "/")
            let step = parts.count == 2 ? Int(parts[1]) ?? 1 : 1
            let low: Int
            let high: Int
            if parts[0] == "*" {
                (low, high) = (range.lowerBound, range.upperBound)
            } else if parts[0].contains("-") {
                let bounds = parts[0].split(separator: "-")
                (low, high) = (parse(bounds[0]), parse(bounds[1]))
            } else {
                low = parse(parts[0])
                high = parts.count == 2 ? range.upperBound : low
            }
            if value >= low, value <= high, (value - low) % step == 0 { return true }
        }
        return false
    }

    static func bruteForceNext(fields: [String], after start: Date, calendar: Calendar, horizonDays: Int) -> Date? {
        let seconds = fields.count == 6 ? fields[0] : "0"
        let rest = fields.suffix(5).map { $0 }
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
        let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        var day = calendar.startOfDay(for: start)
        for _ in 0...horizonDays {
            let parts = calendar.dateComponents([.day, .month, .weekday], from: day)
            let dayMatches = naiveMatches(rest[2], parts.day ?? 0, 1...31, names: [])
                && naiveMatches(rest[3], parts.month ?? 0, 1...12, names: months)
                && naiveMatches(rest[4], (parts.weekday ?? 1) - 1, 0...6, names: days)
            if dayMatches {
                for hour in 0..<24 where naiveMatches(rest[1], hour, 0...23, names: []) {
                    for minute in 0..<60 where naiveMatches(rest[0], minute, 0...59, names: []) {
                        for second in 0..<60 where naiveMatches(seconds, second, 0...59, names: []) {
                            let candidate = day.addingTimeInterval(Double(hour * 3600 + minute * 60 + second))
                            if candidate > start { return candidate }
                        }
                    }
                }
            }
            day = day.addingTimeInterval(86_400)
        }
        return nil
    }
}

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func date(_ text: String) -> Date {
    (try? Date(text, strategy: .iso8601)) ?? Date.distantPast
}

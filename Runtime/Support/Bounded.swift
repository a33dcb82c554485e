import Foundation

/// Numbers that come from outside (headers, host answers, cache entries) made safe before use:
/// every conversion to an integer or a `Duration` goes through here, so NaN, infinity or a huge
/// figure is refused or clamped, never a trap.
public enum Bounded {
    /// `Retry-After` (RFC 9110 §10.2.3) as seconds from `now`, clamped to `limit`: delay-seconds
    /// (1–6 ASCII digits) or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`; a date in the past is 0).
    /// A sign, a fraction, `nan`, a longer figure, the obsolete date forms or anything else is nil
    /// (the caller uses its own backoff).
    public static func retryAfterSeconds(_ value: String?, limit: Int = 86_400, now: Date = Date()) -> Int? {
        guard let value else { return nil }
        if (1...6).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let seconds = Int(value) {
            return min(seconds, limit)
        }
        guard let date = imfFixdate(value) else { return nil }
        let delta = date - now.timeIntervalSince1970
        return delta <= 0 ? 0 : Int(min(delta.rounded(.up), Double(limit)))
    }

    /// Seconds since 1970 of an IMF-fixdate, parsed on bytes (exactly 29 of them); nil otherwise.
    static func imfFixdate(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        guard bytes.count == 29, bytes[3] == 0x2C, bytes[4] == 0x20, bytes[7] == 0x20, bytes[11] == 0x20, bytes[16] == 0x20,
            bytes[19] == 0x3A, bytes[22] == 0x3A, bytes[25] == 0x20, Array(bytes[26...]) == Array("GMT".utf8),
            ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(where: { Array($0.utf8) == Array(bytes[0..<3]) })
        else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var result = 0
            for byte in bytes[range] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                result = result * 10 + Int(byte - 0x30)
            }
            return result
        }
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard let month = months.firstIndex(where: { Array($0.utf8) == Array(bytes[8..<11]) }).map({ $0 + 1 }),
            let day = number(5..<7), let year = number(12..<16), let hour = number(17..<19), let minute = number(20..<22),
            let second = number(23..<25), (1...31).contains(day), (1970...9999).contains(year), hour < 24, minute < 60, second <= 60
        else { return nil }
        // Days from the civil date (proleptic Gregorian), without Calendar.
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Double(days * 86_400 + hour * 3600 + minute * 60 + second)
    }

    /// A finite number clamped into `range`; nil for NaN and infinities.
    public static func clamp(_ value: Double, to range: ClosedRange<Double>) -> Double? {
        guard value.isFinite else { return nil }
        return min(max(value, range.lowerBound), range.upperBound)
    }

    /// A duration from seconds, clamped into `range` (NaN and infinities: the lower bound).
    public static func duration(seconds value: Double, in range: ClosedRange<Double>) -> Duration {
        .milliseconds(Int64((clamp(value, to: range) ?? range.lowerBound) * 1000))
    }
}

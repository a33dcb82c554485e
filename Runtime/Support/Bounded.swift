import Foundation

/// Numbers that come from outside (headers, host answers, cache entries) made safe before use:
/// every conversion to an integer or a `Duration` goes through here, so NaN, infinity or a huge
/// figure is refused or clamped, never a trap.
public enum Bounded {
    /// `Retry-After` as delta seconds (RFC 9110): 1–6 ASCII digits, clamped to `limit`. An HTTP
    /// date, a sign, a fraction, `nan`, a longer figure or anything else is nil (the caller uses its own backoff).
    public static func retryAfterSeconds(_ value: String?, limit: Int = 86_400) -> Int? {
        guard let value, (1...6).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let seconds = Int(value)
        else { return nil }
        return min(seconds, limit)
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

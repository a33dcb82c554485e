// Hostile JSON shapes through JSONReader (make bench): time per byte must stay flat as depth
// grows. Built by scripts/json-bench.sh with `swiftc -O` from the reader's own sources.
import Foundation

@main
struct JSONBench {
    static func measure(_ name: String, _ input: [UInt8], repeats: Int = 20) -> String {
        var best = Double.infinity
        var outcome = ""
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            do {
                _ = try JSONReader.parse(input, maxDepth: 512)
                outcome = "parsed"
            } catch {
                outcome = "refused (\(error.reason))"
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start))
        }
        let perByte = best / Double(max(input.count, 1))
        return "| \(name) | \(input.count) | \(String(format: "%.0f", best / 1000)) µs | \(String(format: "%.2f", perByte)) ns | \(outcome) |"
    }

    static func main() {
        print("| shape | bytes | best of 20 | per byte | outcome |")
        print("|---|---|---|---|---|")
        for depth in [10, 100, 490] {
            let arrays = Array((String(repeating: "[", count: depth) + "1" + String(repeating: "]", count: depth)).utf8)
            print(measure("arrays nested \(depth) deep", arrays))
            let objects = Array((String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)).utf8)
            print(measure("objects nested \(depth) deep", objects))
        }
        print(measure("arrays nested 100,000 deep (over the limit)", Array(String(repeating: "[", count: 100_000).utf8)))
        print(measure("one 1 MiB string", Array(("\"" + String(repeating: "x", count: 1 << 20) + "\"").utf8), repeats: 5))
        let many = "[" + Array(repeating: #"{"k":1,"s":"v"}"#, count: 60_000).joined(separator: ",") + "]"
        print(measure("60,000 small objects (~1 MiB)", Array(many.utf8), repeats: 5))
    }
}

// libFuzzer entry for the parsers and writers that take input from outside (make fuzz).
// Built by scripts/fuzz.sh with `swiftc -sanitize=fuzzer,address` from the pure source files it
// lists (no package dependencies), one binary for every target; FNHOST_FUZZ_TARGET picks one.
// Each target checks invariants, so a wrong answer crashes like a trap would; libFuzzer's
// -timeout makes a slow input a failure too.
import Foundation

enum FuzzTarget: String, CaseIterable {
    case json, csv, cursor, cron, signature, token, keys, resp
}

nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if selected == nil {
        let name = ProcessInfo.processInfo.environment["FNHOST_FUZZ_TARGET"] ?? "json"
        guard let target = FuzzTarget(rawValue: name) else { fatalError("unknown FNHOST_FUZZ_TARGET \(name)") }
        selected = target
    }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)
    switch selected ?? .json {
    case .json:
        // Whatever parses writes back out and parses to the same value.
        if let value = try? JSONReader.parse(bytes) {
            var writer = JSONWriter()
            value.write(to: &writer)
            guard let again = try? JSONReader.parse(writer.bytes) else { fatalError("written JSON does not parse") }
            precondition(again == value, "round trip changed the value")
        }
    case .csv:
        let cell = CSV.cell(text)
        let quoted = text.utf8.contains { $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D }
        precondition(quoted == (cell.utf8.first == 0x22 && cell.utf8.last == 0x22 && cell.utf8.count >= 2), "quoting decided wrong")
        if let first = text.unicodeScalars.first, "=+-@".unicodeScalars.contains(first) {
            precondition(cell.utf8.dropFirst(quoted ? 1 : 0).first == UInt8(ascii: "'"), "formula not defused")
        }
        // Inside the quotes every quote is doubled: no unbalanced quote can end the cell early.
        if quoted {
            let inner = cell.utf8.dropFirst().dropLast()
            var run = 0
            for byte in inner {
                if byte == 0x22 { run += 1 } else { precondition(run % 2 == 0, "lone quote inside a cell"); run = 0 }
            }
            precondition(run % 2 == 0, "lone quote at the end of a cell")
        }
    case .cursor:
        if let parsed = CursorText.lead(text) {
            let again = CursorText.lead(CursorText.encodeLead(micros: parsed.micros, id: parsed.id))
            precondition(again?.micros == parsed.micros && again?.id == parsed.id, "a parsed cursor re-encodes to itself")
        }
        if let parsed = CursorText.audit(text) { precondition(parsed.seq >= 1 && parsed.micros >= 0) }
    case .cron:
        if let schedule = try? CronSchedule(parsing: text) {
            let start = Date(timeIntervalSince1970: 1_700_000_000)
            if let next = schedule.next(after: start, in: .gmt) {
                precondition(next > start, "next occurrence not after the start")
            }
        }
    case .signature:
        let candidates = SignatureHeader.candidates(text)
        precondition(candidates.count <= SignatureHeader.maxEntries)
    case .token:
        if let header = TokenHeader(token: text) { _ = header.alg?.utf8.count }
        if let claims = TokenHeader.payload(of: text), case .string(let tenant)? = claims["tenant_id"], let id = TenantID(validating: tenant) {
            precondition(id.text.utf8.count <= 128 && !id.text.unicodeScalars.contains { $0.value < 0x20 })
        }
    case .keys:
        // Split the input into parts at 0xFF: encode, then decode every part back.
        let parts = bytes.split(separator: 0xFF, omittingEmptySubsequences: false).map(Array.init)
        let key = CacheKey.make("ns", parts: parts)
        precondition(key.utf8.allSatisfy { $0 < 0x80 }, "keys are ASCII")
        let decoded = key.split(separator: ":", omittingEmptySubsequences: false).dropFirst().map { CacheKey.decode($0) }
        precondition(decoded == parts.map { Optional($0) }, "encode is not injective")
    case .resp:
        // Fed whole or in pieces (sizes drawn from a generator seeded by the input, the way reads split
        // a reply), the incremental parser reaches the same outcome: the same value from the same bytes,
        // incomplete, or an error. A reply parses the same from exactly its bytes; every strict prefix
        // is incomplete.
        var limits = RESP.Limits()
        limits.maxReply = 4096
        let whole = Result { () throws in
            var parser = RESP.Parser(limits: limits)
            return try bytes.withUnsafeBytes { raw throws(RESP.ProtocolError) in try parser.consume(raw) }
        }
        let pieces = Result { () throws in try respInPieces(bytes, limits: limits) }
        switch (whole, pieces) {
        case (.success(let one), .success(let other)):
            precondition(one.value == other.value, "pieces parsed to another value")
            precondition(one.value == nil || one.consumed == other.consumed, "pieces took other bytes")
        case (.failure, .failure):
            break
        default:
            preconditionFailure("whole and in pieces disagree: \(whole) vs \(pieces)")
        }
        guard case .success(let step) = whole, let value = step.value else { break }
        precondition(step.consumed > 0 && step.consumed <= bytes.count)
        let exact = Array(bytes.prefix(step.consumed))
        let again = try? exact.withUnsafeBytes { raw throws(RESP.ProtocolError) in try RESP.parse(raw, limits: limits) }
        precondition(again?.value == value && again?.consumed == step.consumed, "reply depends on what follows it")
        let cut = Array(exact.dropLast())
        do {
            let partial = try cut.withUnsafeBytes { raw throws(RESP.ProtocolError) in try RESP.parse(raw, limits: limits) }
            precondition(partial == nil, "a strict prefix parsed as a reply")
        } catch {
            preconditionFailure("a strict prefix of a reply is a protocol error: \(error)")
        }
    }
    return 0
}

/// `bytes` handed to one parser in pieces of 1 to 64 bytes, as a decoder sees reads: the bytes taken are
/// dropped, the rest is passed again with the next piece. The first reply, with every byte it took.
private func respInPieces(_ bytes: [UInt8], limits: RESP.Limits) throws -> RESP.Parser.Step {
    var seed = UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15
    for byte in bytes { seed = (seed ^ UInt64(byte)) &* 0x100_0000_01B3 }
    var parser = RESP.Parser(limits: limits)
    var pending: [UInt8] = []
    var offset = 0
    var taken = 0
    while offset < bytes.count {
        seed ^= seed << 13
        seed ^= seed >> 7
        seed ^= seed << 17
        let end = min(bytes.count, offset + 1 + Int(seed % 64))
        pending.append(contentsOf: bytes[offset..<end])
        offset = end
        let step = try pending.withUnsafeBytes { raw throws(RESP.ProtocolError) in try parser.consume(raw) }
        pending.removeFirst(step.consumed)
        taken += step.consumed
        if step.value != nil { return RESP.Parser.Step(value: step.value, consumed: taken) }
    }
    return RESP.Parser.Step(value: nil, consumed: taken)
}

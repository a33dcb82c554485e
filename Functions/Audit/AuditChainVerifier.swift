import CoreMetrics
import FunctionRuntime
import Logging

/// Recomputes the hash chains (docs/audit.md) and reports the first bad `seq` of every broken chain.
///
/// Incremental by default: a chain is read from its checkpoint (the last verified `seq` and
/// hash), after checking that the checkpointed event is still there with the same hash; `full`
/// re-reads every chain from seq 1. The chains are those with a head, a checkpoint or an event
/// (found by a skip scan of the primary key on PostgreSQL, so a removed head is noticed). A chain's
/// reads are bounded by its head as read first, so events appended meanwhile are left for the
/// next run; an event beyond the head afterwards was not written by an append.
struct AuditChainVerifier: Sendable {
    struct Break: Sendable, Equatable, CustomStringConvertible {
        enum Reason: String, Sendable {
            case hashMismatch = "hash_mismatch"
            case brokenLink = "broken_link"
            case gap
            case missingTail = "missing_tail"
            case beyondHead = "event_beyond_head"
            case missingHead = "missing_head"
            case checkpointMismatch = "checkpoint_mismatch"
            case badFormat = "bad_format"
            /// The chain no longer has the root of a checkpoint the module signed (docs/audit.md).
            case checkpointInconsistent = "checkpoint_inconsistent"
            /// A stored signed checkpoint does not verify with the module's key.
            case checkpointSignature = "checkpoint_signature"
        }

        var chainID: String
        var seq: Int64
        var reason: Reason

        var description: String { "chain \(chainID): first bad seq \(seq) (\(reason.rawValue))" }
    }

    struct Report: Sendable {
        var chains = 0
        var events = 0
        var breaks: [Break] = []
    }

    let store: any AuditStore
    var pageSize = 1000
    /// Checks stored signed checkpoints' signatures when set.
    var signer: CheckpointSigner? = nil

    func verify(tenant: String? = nil, full: Bool = false) async throws(StoreUnavailable) -> Report {
        let checkpoints = try await store.checkpoints()
        // Chains keyed on bytes: canonically equivalent chain ids are two chains, both verified.
        var chains: Set<ChainID>
        if let tenant {
            chains = [ChainID(stored: tenant)]
        } else {
            chains = Set(try await store.chainIDs().map(ChainID.init(stored:))).union(checkpoints.keys)
            chains.formUnion(try await store.chainIDsWithEvents().map(ChainID.init(stored:)))
        }
        var report = Report()
        for chainID in chains.sorted() {
            let chain = chainID.text
            let (events, failure, verifiedHead) = try await verifyChain(chain, from: full ? nil : checkpoints[chainID])
            if events == 0, failure == nil, verifiedHead == nil { continue }  // --tenant of a chain that does not exist
            report.chains += 1
            report.events += events
            if let failure {
                report.breaks.append(failure)
            } else if let failure = try await checkSignedCheckpoint(chain, full: full) {
                report.breaks.append(failure)
            } else if let verifiedHead, verifiedHead.seq > (checkpoints[chainID]?.seq ?? 0) {
                try await store.saveCheckpoint(chain, verifiedHead)
            }
        }
        return report
    }

    /// The chain against the latest checkpoint the module signed (docs/audit.md): its signature, and the
    /// root of that many leaves — recomputed from the events themselves in a full run, from the
    /// stored tree otherwise (the incremental run trusts the prefix it verified before, which the
    /// verifier position's hash pins). A history rewritten behind a handed-out checkpoint is a
    /// break even when every hash was recomputed.
    func checkSignedCheckpoint(_ chain: String, full: Bool) async throws(StoreUnavailable) -> Break? {
        guard let latest = try await store.latestSignedCheckpoint(chain) else { return nil }
        if let signer {
            let note = try? CheckpointNote.verified(latest.note, verifierKey: signer.verifierKey)
            guard let note, note.size == latest.treeSize, note.root == latest.root,
                note.chainID(under: signer.name).map({ $0.utf8.elementsEqual(chain.utf8) }) == true
            else { return Break(chainID: chain, seq: max(latest.treeSize, 1), reason: .checkpointSignature) }
        }
        let tree = AuditTree(store: store, pageSize: pageSize)
        let root: Merkle.Hash?
        if full {
            root = try await tree.rootFromEvents(chain, size: latest.treeSize)
        } else {
            let size = try await tree.extend(chain)
            root = size >= latest.treeSize ? try await tree.root(chain, size: latest.treeSize) : nil
        }
        guard root == latest.root else { return Break(chainID: chain, seq: max(latest.treeSize, 1), reason: .checkpointInconsistent) }
        return nil
    }

    /// The event's `tenant_id` names its chain, byte for byte (`platform`: no tenant).
    static func tenantMatches(_ tenant: String?, chain: String) -> Bool {
        switch ChainID(stored: chain) {
        case .platform: tenant == nil
        case .tenant(let id): tenant.map { $0.utf8.elementsEqual(id.text.utf8) } ?? false
        }
    }

    /// Returns the events read, the first break, and the verified head (seq, hash) when valid.
    private func verifyChain(_ chain: String, from checkpoint: ChainHead?) async throws(StoreUnavailable)
        -> (Int, Break?, ChainHead?)
    {
        let head = try await store.chainHead(chain)
        var expected = ChainHead.empty
        if let checkpoint {
            let stored = try await store.chainEvents(chain, after: checkpoint.seq - 1, through: checkpoint.seq, limit: 1).first
            guard let stored, stored.event.currentEventHash == checkpoint.hash else {
                return (0, Break(chainID: chain, seq: checkpoint.seq, reason: .checkpointMismatch), nil)
            }
            expected = ChainHead(seq: checkpoint.seq, hash: checkpoint.hash, occurredAt: nil)
        }
        let through = head?.seq ?? Int64.max
        var read = 0
        while true {
            let page = try await store.chainEvents(chain, after: expected.seq, through: through, limit: pageSize)
            for stored in page {
                read += 1
                let event = stored.event
                if event.seq != expected.seq + 1 {
                    return (read, Break(chainID: chain, seq: expected.seq + 1, reason: .gap), nil)
                }
                if stored.formatError != nil || !Self.tenantMatches(event.tenantID, chain: chain) {
                    return (read, Break(chainID: chain, seq: event.seq, reason: .badFormat), nil)
                }
                if event.prevEventHash != expected.hash {
                    return (read, Break(chainID: chain, seq: event.seq, reason: .brokenLink), nil)
                }
                if event.computedHash != event.currentEventHash {
                    return (read, Break(chainID: chain, seq: event.seq, reason: .hashMismatch), nil)
                }
                expected = ChainHead(seq: event.seq, hash: event.currentEventHash, occurredAt: nil)
            }
            if page.count < pageSize { break }
        }
        guard let head else {
            if read == 0, checkpoint == nil { return (0, nil, nil) }  // no such chain
            // Events (or a checkpoint) without a head: the head row was removed.
            return (read, Break(chainID: chain, seq: expected.seq + 1, reason: .missingHead), nil)
        }
        if head.seq > expected.seq {
            return (read, Break(chainID: chain, seq: expected.seq + 1, reason: .missingTail), nil)
        }
        if head.hash != expected.hash {
            return (read, Break(chainID: chain, seq: expected.seq, reason: .hashMismatch), nil)
        }
        // Anything stored beyond the head as read now (heads only move forward) bypassed the append path.
        if let last = try await store.lastSeq(chain), let now = try await store.chainHead(chain), last > now.seq {
            return (read, Break(chainID: chain, seq: now.seq + 1, reason: .beyondHead), nil)
        }
        return (read, nil, expected.seq > 0 ? expected : nil)
    }
}

/// One verification run as the timer function and `fnhost verify-audit` do it: verify, append the
/// outcome to the platform chain (`AUDIT_CHAIN_VERIFIED`, or `AUDIT_CHAIN_BROKEN` with severity
/// critical), update the metrics, log every break.
struct AuditVerification: Sendable {
    let verifier: AuditChainVerifier
    let log: any AuditStore
    let logger: Logger
    let breaksGauge: Gauge
    let lastVerified: Gauge
    let verifiedEvents: CoreMetrics.Counter

    let keys: CheckpointKeys?

    init(store: any AuditStore, logger: Logger, metrics: any MetricsFactory, keys: CheckpointKeys? = nil) {
        verifier = AuditChainVerifier(store: store)
        self.keys = keys
        log = store
        self.logger = logger
        breaksGauge = Gauge(label: "audit_chain_breaks", factory: metrics)
        lastVerified = Gauge(label: "audit_chain_last_verified_timestamp_seconds", factory: metrics)
        verifiedEvents = CoreMetrics.Counter(label: "audit_events_verified_total", factory: metrics)
    }

    func run(tenant: String? = nil, full: Bool = false) async throws(StoreUnavailable) -> AuditChainVerifier.Report {
        var verifier = verifier
        verifier.signer = try? await keys?.signer()
        let report = try await verifier.verify(tenant: tenant, full: full)
        var details: [String: JSONValue] = [
            "chains": .number(Double(report.chains)), "events": .number(Double(report.events)),
            "breaks": .number(Double(report.breaks.count)),
        ]
        if let tenant { details["tenant_id"] = .string(tenant) }
        if full { details["full"] = .bool(true) }
        if !report.breaks.isEmpty {
            details["broken"] = .array(report.breaks.prefix(100).map { broken in
                .object(["chain_id": .string(broken.chainID), "seq": .number(Double(broken.seq)), "reason": .string(broken.reason.rawValue)])
            })
        }
        try await log.append(
            AuditRecord(
                tenantID: nil, actorSub: nil, actorEmail: nil,
                eventType: report.breaks.isEmpty ? "AUDIT_CHAIN_VERIFIED" : "AUDIT_CHAIN_BROKEN",
                severity: report.breaks.isEmpty ? .info : .critical, details: details))
        breaksGauge.record(report.breaks.count)
        verifiedEvents.increment(by: report.events)
        lastVerified.record(Timestamps.microseconds(Timestamps.now()).map { Int($0 / 1_000_000) } ?? 0)
        for broken in report.breaks {
            logger.critical(
                "audit chain broken",
                metadata: ["chain_id": .string(broken.chainID), "seq": .stringConvertible(broken.seq), "reason": .string(broken.reason.rawValue)])
        }
        logger.info(
            "audit chains verified",
            metadata: [
                "chains": .stringConvertible(report.chains), "events": .stringConvertible(report.events),
                "breaks": .stringConvertible(report.breaks.count),
            ])
        return report
    }
}

/// The `AuditChainVerifier` timer function (`%AUDIT_VERIFY_SCHEDULE%`, daily at 02:00 by default).
struct AuditChainVerifierFunction: TimerFunction {
    let verification: AuditVerification

    func run(_ timer: TimerInfo, context: TimerContext) async throws {
        do {
            _ = try await verification.run()
        } catch {
            throw FunctionError.serviceUnavailable("audit verification could not read the database")
        }
    }
}

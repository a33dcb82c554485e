import FunctionRuntime

/// The audit log's storage (`audit_events`, `audit_chain_heads`, `audit_verifier_positions`, the
/// Merkle tree `audit_tree_nodes` and the signed `audit_checkpoints`), on
/// PostgreSQL and SQLite. Appends are serialized per chain by the chain's head row; the
/// table itself refuses UPDATE, DELETE and TRUNCATE.
protocol AuditStore: Sendable {
    /// Appends one event to its chain (the tenant's, or `platform`) in its own transaction.
    @discardableResult func append(_ record: AuditRecord) async throws(StoreUnavailable) -> AuditEvent
    /// `GET /api/audit`: newest first.
    func auditEvents(_ query: AuditQuery) async throws(StoreUnavailable) -> [AuditEvent]

    // The verifier's reads.
    /// Every chain with a head row.
    func chainIDs() async throws(StoreUnavailable) -> [String]
    /// Every chain that has an event (a skip scan of the primary key, one probe per chain).
    func chainIDsWithEvents() async throws(StoreUnavailable) -> [String]
    func chainHead(_ chain: String) async throws(StoreUnavailable) -> ChainHead?
    /// The highest `seq` stored for the chain.
    func lastSeq(_ chain: String) async throws(StoreUnavailable) -> Int64?
    /// Events with `after < seq <= through`, in seq order, at most `limit`.
    func chainEvents(_ chain: String, after: Int64, through: Int64, limit: Int) async throws(StoreUnavailable) -> [StoredAuditEvent]
    func checkpoints() async throws(StoreUnavailable) -> [ChainID: ChainHead]
    /// Moves a chain's checkpoint forward (the table refuses to move one back).
    func saveCheckpoint(_ chain: String, _ head: ChainHead) async throws(StoreUnavailable)

    // The chain's Merkle tree (docs/audit.md): complete subtrees, append-only, derived from the events.
    /// Leaves in the stored tree (its level 0 nodes).
    func treeSize(_ chain: String) async throws(StoreUnavailable) -> Int64
    /// The stored hashes of `nodes` (absent ones are missing from the answer).
    func treeNodes(_ chain: String, _ nodes: Set<TreeNode>) async throws(StoreUnavailable) -> [TreeNode: [UInt8]]
    /// Stores nodes; one already stored is left as it is (every writer derives the same hash).
    func addTreeNodes(_ chain: String, _ nodes: [TreeNode: [UInt8]]) async throws(StoreUnavailable)
    /// The signed checkpoint of the largest tree size (`audit_checkpoints`).
    func latestSignedCheckpoint(_ chain: String) async throws(StoreUnavailable) -> SignedCheckpoint?
    /// Keeps a signed checkpoint; false when one of that size was stored first (by another instance).
    func saveSignedCheckpoint(_ checkpoint: SignedCheckpoint) async throws(StoreUnavailable) -> Bool
}

/// A checkpoint the module signed and handed out (docs/audit.md): never changed, never removed.
struct SignedCheckpoint: Sendable, Equatable {
    var chainID: String
    var treeSize: Int64
    var root: [UInt8]
    var note: String
}

/// A row read back for verification; `formatError` when its `details` is not docs/audit.md JSON.
struct StoredAuditEvent: Sendable {
    var event: AuditEvent
    var formatError: String?
}

/// Filters of `GET /api/audit`.
struct AuditQuery: Sendable, Equatable {
    enum Scope: Sendable, Equatable {
        /// One chain: a tenant's, or `platform`.
        case chain(ChainID)
        /// Every chain (a super admin's `tenant_id=*`).
        case all
    }

    var scope: Scope
    var eventType: String?
    /// Canonical timestamp; events at or after it.
    var since: String?
    /// Canonical timestamp; events at or before it.
    var until: String? = nil
    /// Events by this actor only (byte-exact).
    var actorSub: UserID? = nil
    var cursor: AuditCursor?
    var limit: Int
    /// Oldest first (the export) instead of newest first; the cursor then moves forward.
    var oldestFirst = false
}

/// Position in the newest-first listing: `{occurred_at µs}_{seq}_{chain_id}`.
struct AuditCursor: Sendable, Equatable {
    var occurredAt: String
    var seq: Int64
    var chainID: String

    var encoded: String { "\(Timestamps.microseconds(occurredAt) ?? 0)_\(seq)_\(chainID)" }

    init(occurredAt: String, seq: Int64, chainID: String) {
        self.occurredAt = occurredAt
        self.seq = seq
        self.chainID = chainID
    }

    init(decoding text: String) throws(FunctionError) {
        guard let (micros, seq, chain) = CursorText.audit(text) else { throw .validationFailed("parameter 'cursor' is not a valid cursor") }
        occurredAt = Timestamps.format(seconds: micros / 1_000_000, microseconds: Int(micros % 1_000_000))
        self.seq = seq
        chainID = chain
    }
}

import Foundation
import FunctionRuntime
import Logging
import Synchronization

/// Each audit chain as an RFC 6962 Merkle tree (docs/audit.md). Leaf `i` is the 32 bytes of event
/// `seq = i + 1`'s `current_event_hash`. The tree is derived incrementally from the events
/// (`extend`: complete subtrees are stored in `audit_tree_nodes` as they complete, nothing on the
/// write path), so a root or a proof reads O(log n) stored nodes, whatever the chain's length.
struct AuditTree: Sendable {
    /// Why a checkpoint is not signed: the stored tree disagrees with one the module signed before.
    struct Inconsistent: Error, CustomStringConvertible {
        let description: String
    }

    let store: any AuditStore
    var pageSize = 1000

    /// Brings the stored tree up to the chain's head; returns its size. Stops at a gap or a
    /// malformed hash (the verifier reports those), so the tree never holds what the chain does not.
    func extend(_ chain: String) async throws(StoreUnavailable) -> Int64 {
        var size = try await store.treeSize(chain)
        let head = try await store.chainHead(chain)?.seq ?? 0
        while size < head {
            let frontier = try await store.treeNodes(chain, Set(Merkle.frontier(size: size)))
            guard frontier.count == Merkle.frontier(size: size).count else {
                throw StoreUnavailable(description: "audit tree of chain \(chain) is missing nodes below size \(size)")
            }
            let events = try await store.chainEvents(chain, after: size, through: head, limit: pageSize)
            var leaves: [Merkle.Hash] = []
            for (offset, stored) in events.enumerated() {
                guard stored.event.seq == size + 1 + Int64(offset), let leaf = Hex.decode(stored.event.currentEventHash), leaf.count == 32
                else { break }
                leaves.append(Merkle.leafHash(leaf))
            }
            guard !leaves.isEmpty else { break }
            try await store.addTreeNodes(chain, Merkle.extend(size: size, frontier: frontier, leaves: leaves))
            size += Int64(leaves.count)
            if leaves.count < events.count { break }
        }
        return size
    }

    /// Runs `compute` against the stored nodes it needs, read in one batch.
    func withNodes<T>(_ chain: String, _ compute: @escaping (Merkle.Nodes) -> T) async throws(StoreUnavailable) -> T {
        let wanted = Merkle.needed { nodes in _ = compute(nodes) }
        let found = try await store.treeNodes(chain, wanted)
        guard found.count == wanted.count else {
            throw StoreUnavailable(description: "audit tree of chain \(chain) is missing \(wanted.count - found.count) nodes")
        }
        return compute { found[$0] ?? Merkle.emptyRoot }
    }

    func root(_ chain: String, size: Int64) async throws(StoreUnavailable) -> Merkle.Hash {
        try await withNodes(chain) { Merkle.root(size: size, $0) }
    }

    /// The signed checkpoint of the chain's current tree. The latest stored one is handed out again
    /// while the tree has not grown; a new one is signed only after checking that the stored tree
    /// still has the root of the latest stored checkpoint, so two checkpoints of one chain are
    /// always consistent (the module never equivocates).
    func checkpoint(_ chain: String, signer: CheckpointSigner) async throws -> String {
        let size = try await extend(chain)
        let root = try await root(chain, size: size)
        if let latest = try await store.latestSignedCheckpoint(chain) {
            guard latest.treeSize <= size else {
                throw Inconsistent(description: "chain \(chain) has \(size) events but a checkpoint of \(latest.treeSize) was signed")
            }
            let rootThen = latest.treeSize == size ? root : try await self.root(chain, size: latest.treeSize)
            guard rootThen == latest.root else {
                throw Inconsistent(description: "chain \(chain) no longer has the root signed at size \(latest.treeSize)")
            }
            if latest.treeSize == size { return latest.note }
        }
        let note = try signer.sign(chainID: chain, size: size, root: root)
        if try await store.saveSignedCheckpoint(SignedCheckpoint(chainID: chain, treeSize: size, root: root, note: note)) {
            return note
        }
        // Another instance signed this size first: hand out the stored one (same root).
        guard let stored = try await store.latestSignedCheckpoint(chain), stored.treeSize >= size else { return note }
        return stored.treeSize == size ? stored.note : note
    }

    /// MTH of the first `size` leaves recomputed from the events themselves (not the stored tree),
    /// O(log n) memory; nil when the chain has fewer events or a malformed hash.
    func rootFromEvents(_ chain: String, size: Int64) async throws(StoreUnavailable) -> Merkle.Hash? {
        var stack: [(level: Int, hash: Merkle.Hash)] = []
        var seen: Int64 = 0
        while seen < size {
            let page = try await store.chainEvents(chain, after: seen, through: size, limit: pageSize)
            guard !page.isEmpty else { return nil }
            for stored in page {
                guard stored.event.seq == seen + 1, let leaf = Hex.decode(stored.event.currentEventHash), leaf.count == 32 else { return nil }
                seen += 1
                var entry = (level: 0, hash: Merkle.leafHash(leaf))
                while let top = stack.last, top.level == entry.level {
                    stack.removeLast()
                    entry = (top.level + 1, Merkle.nodeHash(top.hash, entry.hash))
                }
                stack.append(entry)
            }
        }
        guard var root = stack.popLast()?.hash else { return Merkle.emptyRoot }
        while let left = stack.popLast() { root = Merkle.nodeHash(left.hash, root) }
        return root
    }
}

/// `AUDIT_SIGNING_KEY` read through the secrets provider when first needed (so a Key Vault
/// rotation needs no restart once the provider's cache turns over), or the development key.
struct CheckpointKeys: Sendable {
    enum Source: Sendable {
        case secret(Secrets)
        /// Development: a key generated once into the development host's folder.
        case file(URL)
    }

    let origin: String
    let source: Source

    func signer() async throws(FunctionError) -> CheckpointSigner {
        let seed: [UInt8]
        switch source {
        case .secret(let secrets):
            let text: String?
            do {
                text = try await secrets.secret(named: ModuleSettingSpecs.auditSigningKey.name)
            } catch {
                throw FunctionError.serviceUnavailable("the audit signing key is unavailable; try again shortly")
            }
            guard let text, let parsed = CheckpointSigner.seed(base64: text) else {
                throw FunctionError.serviceUnavailable("AUDIT_SIGNING_KEY is not set to the base64 of a 32-byte Ed25519 seed")
            }
            seed = parsed
        case .file(let url):
            guard let parsed = Self.developmentSeed(url) else {
                throw FunctionError.serviceUnavailable("the development audit signing key could not be created")
            }
            seed = parsed
        }
        do {
            return try CheckpointSigner(name: origin, seed: seed)
        } catch {
            throw FunctionError.serviceUnavailable(error.description)
        }
    }

    private static let creation = Mutex<Void>(())

    /// Reads (or creates, mode 0600) the development seed file.
    static func developmentSeed(_ url: URL) -> [UInt8]? {
        creation.withLock { _ in
            if let text = try? String(contentsOf: url, encoding: .utf8), let seed = CheckpointSigner.seed(base64: text) { return seed }
            let seed = CheckpointSigner.generatedSeed()
            do {
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data((Data(seed).base64EncodedString() + "\n").utf8).write(to: url, options: .atomic)
                try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
            } catch {
                return nil
            }
            return seed
        }
    }
}

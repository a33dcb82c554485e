import Crypto

/// A complete, aligned subtree of a chain's Merkle tree: the `2^level` leaves from
/// `index << level`. Level 0 nodes are leaf hashes. Only these are ever stored: they never change
/// once the tree has grown past them, and every hash a proof needs is built from O(log n) of them.
struct TreeNode: Hashable, Sendable, Comparable {
    let level: Int
    let index: Int64

    static func < (lhs: TreeNode, rhs: TreeNode) -> Bool { (lhs.level, lhs.index) < (rhs.level, rhs.index) }
}

/// RFC 6962 §2.1 (also RFC 9162 §2.1): the Merkle tree hash, audit paths and consistency proofs,
/// computed from stored complete subtrees, and their verification (the verifier side is written
/// from RFC 9162 §2.1.3.2 and §2.1.4.2, independently of the proving side).
enum Merkle {
    typealias Hash = [UInt8]
    /// Looks a stored node up; every caller first collects the nodes it will ask for (`needed`).
    typealias Nodes = (TreeNode) -> Hash

    /// MTH of no leaves: SHA-256 of the empty string.
    static let emptyRoot: Hash = Array(SHA256.hash(data: [UInt8]()))

    static func leafHash(_ data: some Sequence<UInt8>) -> Hash {
        var hasher = SHA256()
        hasher.update(data: [0x00])
        hasher.update(data: Array(data))
        return Array(hasher.finalize())
    }

    static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        var hasher = SHA256()
        hasher.update(data: [0x01])
        hasher.update(data: left)
        hasher.update(data: right)
        return Array(hasher.finalize())
    }

    /// The largest power of two smaller than `n` (n ≥ 2).
    static func split(_ n: Int64) -> Int64 {
        Int64(1) << (63 - (n - 1).leadingZeroBitCount)
    }

    /// MTH(D[start:end]) exactly as RFC 6962 defines it, reading complete aligned subtrees.
    static func rangeHash(_ start: Int64, _ end: Int64, _ node: Nodes) -> Hash {
        let n = end - start
        if n <= 0 { return emptyRoot }
        if n & (n - 1) == 0, start % n == 0 {
            return node(TreeNode(level: n.trailingZeroBitCount, index: start / n))
        }
        let k = split(n)
        return nodeHash(rangeHash(start, start + k, node), rangeHash(start + k, end, node))
    }

    static func root(size: Int64, _ node: Nodes) -> Hash { rangeHash(0, size, node) }

    /// PATH(m, D[0:n]): the audit path of leaf `m` (0-based) in the tree of `n` leaves.
    static func inclusionProof(leaf m: Int64, size n: Int64, _ node: Nodes) -> [Hash] {
        func path(_ m: Int64, _ start: Int64, _ end: Int64) -> [Hash] {
            let n = end - start
            if n <= 1 { return [] }
            let k = split(n)
            if m < k { return path(m, start, start + k) + [rangeHash(start + k, end, node)] }
            return path(m - k, start + k, end) + [rangeHash(start, start + k, node)]
        }
        return path(m, 0, n)
    }

    /// PROOF(m, D[0:n]): that the tree of `m` leaves is a prefix of the tree of `n` (0 < m ≤ n).
    static func consistencyProof(from m: Int64, to n: Int64, _ node: Nodes) -> [Hash] {
        func subproof(_ m: Int64, _ start: Int64, _ end: Int64, _ whole: Bool) -> [Hash] {
            let n = end - start
            if m == n { return whole ? [] : [rangeHash(start, end, node)] }
            let k = split(n)
            if m <= k { return subproof(m, start, start + k, whole) + [rangeHash(start + k, end, node)] }
            return subproof(m - k, start + k, end, false) + [rangeHash(start, start + k, node)]
        }
        guard m > 0, m <= n else { return [] }
        return subproof(m, 0, n, true)
    }

    /// The nodes `compute` reads, found by running it once against placeholders (so a proof is
    /// answered with one batched read).
    static func needed(_ compute: (Nodes) -> Void) -> Set<TreeNode> {
        final class Recorder {
            var wanted: Set<TreeNode> = []
        }
        let recorder = Recorder()
        compute { node in
            recorder.wanted.insert(node)
            return emptyRoot
        }
        return recorder.wanted
    }

    /// The nodes that appending `leaves` (leaf hashes) to a tree of `size` leaves completes, given
    /// the tree's frontier (`frontier(size)`'s nodes). Returns level 0 nodes and every parent that
    /// became complete.
    static func extend(size: Int64, frontier: [TreeNode: Hash], leaves: [Hash]) -> [TreeNode: Hash] {
        var known = frontier
        var added: [TreeNode: Hash] = [:]
        for (offset, leaf) in leaves.enumerated() {
            var node = TreeNode(level: 0, index: size + Int64(offset))
            var hash = leaf
            known[node] = hash
            added[node] = hash
            while node.index & 1 == 1, let left = known[TreeNode(level: node.level, index: node.index - 1)] {
                hash = nodeHash(left, hash)
                node = TreeNode(level: node.level + 1, index: node.index >> 1)
                known[node] = hash
                added[node] = hash
            }
        }
        return added
    }

    /// The complete subtrees whose hashes extend a tree of `size` leaves: one per set bit.
    static func frontier(size: Int64) -> [TreeNode] {
        var nodes: [TreeNode] = []
        var start: Int64 = 0
        for level in stride(from: 62, through: 0, by: -1) where size & (Int64(1) << level) != 0 {
            nodes.append(TreeNode(level: level, index: start >> level))
            start += Int64(1) << level
        }
        return nodes
    }

    // MARK: verification (RFC 9162 §2.1.3.2, §2.1.4.2)

    /// The root that an inclusion proof of `leafHash` at `index` in a tree of `size` leads to (nil: malformed).
    static func rootFromInclusion(index: Int64, size: Int64, leafHash: Hash, proof: [Hash]) -> Hash? {
        guard index >= 0, index < size else { return nil }
        var fn = index, sn = size - 1
        var r = leafHash
        for p in proof {
            if sn == 0 { return nil }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0, fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 ? r : nil
    }

    /// True when `proof` shows the tree of `m` leaves (root `first`) is a prefix of the tree of `n` (root `second`).
    static func verifyConsistency(from m: Int64, to n: Int64, first: Hash, second: Hash, proof: [Hash]) -> Bool {
        guard m > 0, m <= n else { return false }
        if m == n { return proof.isEmpty && first == second }
        guard !proof.isEmpty else { return false }
        var path = proof
        if m & (m - 1) == 0 { path.insert(first, at: 0) }
        var fn = m - 1, sn = n - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var fr = path[0], sr = path[0]
        for c in path.dropFirst() {
            if sn == 0 { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0, fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && fr == first && sr == second
    }
}

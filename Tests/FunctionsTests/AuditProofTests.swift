import Crypto
import Foundation
import TestSupport
import FunctionRuntime
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import Functions

/// Every complete aligned subtree of `leaves` (raw leaf data), computed the slow way: the
/// reference the stored tree and the proofs are checked against.
func naiveNodes(_ leaves: [[UInt8]]) -> [TreeNode: [UInt8]] {
    var nodes: [TreeNode: [UInt8]] = [:]
    var level = leaves.map { Merkle.leafHash($0) }
    var depth = 0
    while !level.isEmpty {
        for (index, hash) in level.enumerated() { nodes[TreeNode(level: depth, index: Int64(index))] = hash }
        var next: [[UInt8]] = []
        var index = 0
        while index + 1 < level.count {
            next.append(Merkle.nodeHash(level[index], level[index + 1]))
            index += 2
        }
        level = next
        depth += 1
    }
    return nodes
}

/// RFC 6962's MTH straight from the definition (no stored nodes).
func naiveRoot(_ leaves: [[UInt8]]) -> [UInt8] {
    if leaves.isEmpty { return Array(SHA256.hash(data: [UInt8]())) }
    if leaves.count == 1 { return Merkle.leafHash(leaves[0]) }
    var k = 1
    while k * 2 < leaves.count { k *= 2 }
    return Merkle.nodeHash(naiveRoot(Array(leaves[..<k])), naiveRoot(Array(leaves[k...])))
}

struct MerkleTests {
    /// The Certificate Transparency reference vectors (RFC 6962 test data): roots of the first 1…8 leaves.
    @Test func certificateTransparencyVectors() {
        let leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .map { Hex.decode($0) ?? [0xFF] }
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ]
        let nodes = naiveNodes(leaves)
        for size in 1...8 {
            #expect(Hex.encode(Merkle.root(size: Int64(size)) { nodes[$0] ?? [] }) == roots[size - 1], "size \(size)")
            #expect(Hex.encode(naiveRoot(Array(leaves.prefix(size)))) == roots[size - 1])
        }
        #expect(Hex.encode(Merkle.root(size: 0) { _ in [] }) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func everyInclusionAndConsistencyProofVerifiesAndTamperingDoesNot() {
        let leaves = (0..<40).map { Array(SHA256.hash(data: [UInt8(truncatingIfNeeded: $0)])) }
        let nodes = naiveNodes(leaves)
        let lookup: Merkle.Nodes = { nodes[$0] ?? [] }
        for n in Int64(1)...40 {
            let root = naiveRoot(Array(leaves.prefix(Int(n))))
            #expect(Merkle.root(size: n, lookup) == root)
            for m in Int64(0)..<n {
                let proof = Merkle.inclusionProof(leaf: m, size: n, lookup)
                let leaf = Merkle.leafHash(leaves[Int(m)])
                #expect(Merkle.rootFromInclusion(index: m, size: n, leafHash: leaf, proof: proof) == root, "inclusion \(m) in \(n)")
                if !proof.isEmpty {
                    var bent = proof
                    bent[0][0] ^= 1
                    #expect(Merkle.rootFromInclusion(index: m, size: n, leafHash: leaf, proof: bent) != root)
                    #expect(Merkle.rootFromInclusion(index: m, size: n, leafHash: leaf, proof: proof.dropLast()) != root)
                }
                #expect(Merkle.rootFromInclusion(index: m, size: n, leafHash: Merkle.leafHash([0xAB]), proof: proof) != root)
            }
            for m in Int64(1)...n {
                let first = naiveRoot(Array(leaves.prefix(Int(m))))
                let proof = Merkle.consistencyProof(from: m, to: n, lookup)
                #expect(Merkle.verifyConsistency(from: m, to: n, first: first, second: root, proof: proof), "consistency \(m) → \(n)")
                if m < n {
                    #expect(!Merkle.verifyConsistency(from: m, to: n, first: Merkle.leafHash([1]), second: root, proof: proof))
                    #expect(!Merkle.verifyConsistency(from: m, to: n, first: first, second: Merkle.leafHash([1]), proof: proof))
                    #expect(!Merkle.verifyConsistency(from: m, to: n, first: first, second: root, proof: proof.dropLast()))
                }
            }
        }
    }

    @Test func extendingInAnyChunksStoresExactlyTheCompleteSubtrees() {
        let leaves = (0..<77).map { Array(SHA256.hash(data: [UInt8($0)])) }
        let expected = naiveNodes(leaves)
        var stored: [TreeNode: [UInt8]] = [:]
        var size: Int64 = 0
        for chunk in [1, 2, 5, 1, 8, 13, 3, 21, 23] {
            let frontier = Dictionary(uniqueKeysWithValues: Merkle.frontier(size: size).map { ($0, stored[$0] ?? []) })
            let hashes = leaves[Int(size)..<Int(size) + chunk].map { Merkle.leafHash($0) }
            stored.merge(Merkle.extend(size: size, frontier: frontier, leaves: hashes)) { $1 }
            size += Int64(chunk)
        }
        #expect(size == 77)
        #expect(stored == expected)
    }

    /// Independent check: every proof the module builds, for every tree of 1…72 leaves, verified
    /// by verifiers written here from RFC 6962 §2.1.1/§2.1.2 (recursively, from PATH and SUBPROOF's
    /// definitions), not with the module's verification code.
    @Test func proofsVerifyWithAnIndependentRFC6962Implementation() {
        func h(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: [0x01] + left + right)) }
        func k(_ n: Int) -> Int { var k = 1; while k * 2 < n { k *= 2 }; return k }
        // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) or PATH(m-k, D[k:n]) : MTH(D[0:k]).
        func rootFromPath(_ m: Int, _ n: Int, _ leaf: [UInt8], _ path: ArraySlice<[UInt8]>) -> [UInt8]? {
            if n == 1 { return path.isEmpty ? leaf : nil }
            guard let sibling = path.last else { return nil }
            let split = k(n)
            if m < split { return rootFromPath(m, split, leaf, path.dropLast()).map { h($0, sibling) } }
            return rootFromPath(m - split, n - split, leaf, path.dropLast()).map { h(sibling, $0) }
        }
        // SUBPROOF(m, D[n], b): rebuilds (old root, new root) from the proof.
        func roots(_ m: Int, _ n: Int, _ whole: Bool, _ proof: ArraySlice<[UInt8]>, first: [UInt8]) -> ([UInt8], [UInt8])? {
            if m == n {
                if whole { return proof.isEmpty ? (first, first) : nil }
                return proof.count == 1 ? (proof[proof.startIndex], proof[proof.startIndex]) : nil
            }
            guard let sibling = proof.last else { return nil }
            let split = k(n)
            if m <= split {
                return roots(m, split, whole, proof.dropLast(), first: first).map { ($0.0, h($0.1, sibling)) }
            }
            return roots(m - split, n - split, false, proof.dropLast(), first: first).map { (h(sibling, $0.0), h(sibling, $0.1)) }
        }
        let leaves = (0..<72).map { Array(SHA256.hash(data: Array("leaf \($0)".utf8))) }
        let nodes = naiveNodes(leaves)
        let lookup: Merkle.Nodes = { nodes[$0] ?? [] }
        for n in 1...72 {
            let root = naiveRoot(Array(leaves.prefix(n)))
            for m in 0..<n {
                let proof = Merkle.inclusionProof(leaf: Int64(m), size: Int64(n), lookup)
                #expect(rootFromPath(m, n, Merkle.leafHash(leaves[m]), proof[...]) == root, "inclusion \(m) of \(n)")
            }
            for m in 1...n {
                let old = naiveRoot(Array(leaves.prefix(m)))
                let proof = Merkle.consistencyProof(from: Int64(m), to: Int64(n), lookup)
                let rebuilt = roots(m, n, true, proof[...], first: old)
                #expect(rebuilt?.0 == old && rebuilt?.1 == root, "consistency \(m) → \(n)")
            }
        }
    }

    /// The O(log n) claim: a proof in a tree of 10^6 leaves reads a few dozen stored nodes.
    @Test func proofsReadLogarithmicallyManyNodes() {
        let n: Int64 = 1_000_000
        let inclusion = Merkle.needed { _ = Merkle.inclusionProof(leaf: 123_457, size: n, $0) }
        let consistency = Merkle.needed { _ = Merkle.consistencyProof(from: 654_321, to: n, $0) }
        let root = Merkle.needed { _ = Merkle.root(size: n, $0) }
        #expect(inclusion.count <= 40 && consistency.count <= 60 && root.count == Merkle.frontier(size: n).count)
        #expect(root.count == n.nonzeroBitCount)
    }
}

struct CheckpointTests {
    static let seed = Array(UInt8(1)...UInt8(32))

    @Test func noteKeyIdAndVerifierKeyFollowTheNoteConventions() throws {
        let signer = try CheckpointSigner(name: "fnhost.local/audit", seed: Self.seed)
        let publicKey = try Curve25519.Signing.PrivateKey(rawRepresentation: Self.seed).publicKey.rawRepresentation
        let keyID = Array(SHA256.hash(data: Array("fnhost.local/audit".utf8) + [0x0A, 0x01] + Array(publicKey)).prefix(4))
        #expect(signer.keyID == keyID)
        #expect(signer.verifierKey == "fnhost.local/audit+\(Hex.encode(keyID))+\(Data([0x01] + Array(publicKey)).base64EncodedString())")

        let root = Array(SHA256.hash(data: Array("root".utf8)))
        let note = try signer.sign(chainID: "t-acme", size: 42, root: root)
        let lines = note.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count == 6 && lines[5].isEmpty, "\(note)")
        #expect(lines[0] == "fnhost.local/audit/t-acme")
        #expect(lines[1] == "42")
        #expect(lines[2] == Data(root).base64EncodedString())
        #expect(lines[3].isEmpty)
        let signature = lines[4].split(separator: " ")
        #expect(signature.count == 3 && signature[0] == "\u{2014}" && signature[1] == "fnhost.local/audit")
        let raw = try #require(Data(base64Encoded: String(signature[2])))
        #expect(raw.count == 68 && Array(raw.prefix(4)) == keyID)
        let signed = Array("fnhost.local/audit/t-acme\n42\n\(Data(root).base64EncodedString())\n".utf8)
        #expect(try Curve25519.Signing.PublicKey(rawRepresentation: publicKey).isValidSignature(raw.dropFirst(4), for: signed))

        let read = try CheckpointNote.verified(note, verifierKey: signer.verifierKey)
        #expect(read.size == 42 && read.root == root && read.chainID(under: signer.name) == "t-acme")
    }

    @Test func anythingButTheSignedNoteIsRefused() throws {
        let signer = try CheckpointSigner(name: "fnhost.local/audit", seed: Self.seed)
        let other = try CheckpointSigner(name: "fnhost.local/audit", seed: Array(repeating: 7, count: 32))
        let root = Array(SHA256.hash(data: Array("root".utf8)))
        let note = try signer.sign(chainID: "t-acme", size: 42, root: root)
        #expect(throws: CheckpointNote.Failure.noSignature) { try CheckpointNote.verified(note, verifierKey: other.verifierKey) }
        #expect(throws: CheckpointNote.Failure.noSignature) {
            try CheckpointNote.verified(note.replacingOccurrences(of: "\n42\n", with: "\n43\n"), verifierKey: signer.verifierKey)
        }
        #expect(throws: CheckpointNote.Failure.noSignature) {
            try CheckpointNote.verified(note.replacingOccurrences(of: "/t-acme\n", with: "/t-acmf\n"), verifierKey: signer.verifierKey)
        }
        #expect(throws: CheckpointNote.Failure.badKey) { try CheckpointNote.verified(note, verifierKey: "nonsense") }
        var wrongID = signer.verifierKey.split(separator: "+", maxSplits: 2).map(String.init)
        wrongID[1] = "00000000"
        #expect(throws: CheckpointNote.Failure.badKey) { try CheckpointNote.verified(note, verifierKey: wrongID.joined(separator: "+")) }
        #expect(throws: CheckpointNote.Failure.self) { try CheckpointNote.verified("fnhost.local/audit/t\n1\n", verifierKey: signer.verifierKey) }
        #expect(throws: CheckpointNote.Failure.self) { try CheckpointNote.verified("a\nb\nc\n\n", verifierKey: signer.verifierKey) }
        #expect(throws: ModuleConfigurationError.self) { try CheckpointSigner(name: "has space", seed: Self.seed) }
        #expect(throws: ModuleConfigurationError.self) { try CheckpointSigner(name: "a+b", seed: Self.seed) }
        #expect(throws: ModuleConfigurationError.self) { try CheckpointSigner(name: "ok", seed: [1, 2, 3]) }
    }

    /// Base64 has '+' too: every verifier key reads back, whatever its bytes.
    @Test func verifierKeysWithPlusSignsParse() throws {
        var sawPlus = false
        for byte in UInt8(0)..<UInt8(64) {
            let signer = try CheckpointSigner(name: "log.example", seed: Array(repeating: byte, count: 32))
            sawPlus = sawPlus || signer.verifierKey.split(separator: "+").count > 3
            let note = try signer.sign(chainID: "t", size: 0, root: Merkle.emptyRoot)
            #expect(try CheckpointNote.verified(note, verifierKey: signer.verifierKey).size == 0)
        }
        #expect(sawPlus, "the sample includes keys whose base64 holds '+'")
    }

    /// Chain ids are bytes: a hostile id is one path segment, and reads back byte for byte.
    @Test func hostileChainIdsAreOnePathSegment() throws {
        let signer = try CheckpointSigner(name: "fnhost.local/audit", seed: Self.seed)
        for chain in ["a/b c%\u{E9}", "cafe\u{301}", "..", "t\n2\nAAAA", "x+y\u{2014}"] {
            let note = try signer.sign(chainID: chain, size: 1, root: Merkle.emptyRoot)
            let origin = String(note.split(separator: "\n")[0])
            #expect(!origin.dropFirst("fnhost.local/audit/".count).contains("/"), "\(origin)")
            #expect(origin.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F })
            let read = try CheckpointNote.verified(note, verifierKey: signer.verifierKey)
            #expect(read.chainID(under: signer.name).map { Array($0.utf8) } == Array(chain.utf8))
        }
    }
}

/// The proof endpoints through the real module on both databases (docs/api.md, §8b).
@Suite(.serialized) struct AuditProofEndpointTests {
    static let signingSeed = Data(Array(repeating: UInt8(9), count: 32)).base64EncodedString()
    static let extra = ["AUDIT_SIGNING_KEY": signingSeed, "AUDIT_LOG_ORIGIN": "audit.test.example/log"]

    static func events(_ database: String, chain id: String) async throws -> [AuditEvent] {
        try await withAuditStore(database) { store in try await chain(store, id) }
    }

    @Test(arguments: Backend.allCases)
    func checkpointsAndProofsVerifyAgainstTheEvents(backend: Backend) async throws {
        let database = try backend.databaseURL()
        _ = try await StoreSetup.migrate(databaseURL: database, logger: ScratchDatabase.logger)
        try await LeadsHarness.run(databaseURL: database, extra: Self.extra) { host, key, client in
            let tenant = "pf-\(UUID().uuidString.prefix(8))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u-1", ["LEADS_WRITE", "AUDIT_READ"])
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u-1")
            for index in 0..<5 {
                #expect(try await client.send(.post, "/api/leads", token: token, json: #"{"name":"n\#(index)","email":"n@x.example"}"#).status == .created)
            }
            let verifierKey = try await client.execute(uri: "/api/audit/verifier-key", method: .get) { String(buffer: $0.body) }
            #expect(verifierKey.hasPrefix("audit.test.example/log+"))

            let first = try await client.send(.get, "/api/audit/checkpoint", token: token)
            #expect(first.status == .ok && first.headers[.contentType]?.hasPrefix("text/plain") == true, "\(first.body)")
            let checkpoint = try CheckpointNote.verified(first.body, verifierKey: verifierKey)
            #expect(checkpoint.chainID(under: "audit.test.example/log") == tenant)
            let stored = try await Self.events(database, chain: tenant)
            #expect(checkpoint.size >= 5 && Int(checkpoint.size) <= stored.count)
            let leaves = stored.prefix(Int(checkpoint.size)).map { Hex.decode($0.currentEventHash) ?? [] }
            #expect(checkpoint.root == naiveRoot(leaves), "the signed root is the RFC 6962 root of the events' hashes")

            for seq in 1...checkpoint.size {
                let answer = try await client.send(.get, "/api/audit/proof?seq=\(seq)&tree_size=\(checkpoint.size)", token: token)
                #expect(answer.status == .ok, "\(answer.body)")
                let json = answer.json
                #expect(json["chain_id"] as? String == tenant && json["seq"] as? Int == Int(seq) && json["leaf_index"] as? Int == Int(seq - 1))
                #expect(json["tree_size"] as? Int == Int(checkpoint.size))
                let leafHash = try #require(Hex.decode(json["leaf_hash"] as? String ?? ""))
                #expect(leafHash == Merkle.leafHash(leaves[Int(seq - 1)]))
                let path = (json["inclusion"] as? [String] ?? []).compactMap { Hex.decode($0) }
                #expect(Merkle.rootFromInclusion(index: seq - 1, size: checkpoint.size, leafHash: leafHash, proof: path) == checkpoint.root)
            }

            // More events, a second checkpoint: consistent with the first, and proven so.
            for index in 0..<3 {
                _ = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"m\#(index)","email":"m@x.example"}"#)
            }
            let second = try CheckpointNote.verified(
                try await client.send(.get, "/api/audit/checkpoint", token: token).body, verifierKey: verifierKey)
            #expect(second.size >= checkpoint.size + 3)
            let consistency = try await client.send(.get, "/api/audit/consistency?from=\(checkpoint.size)&to=\(second.size)", token: token)
            #expect(consistency.status == .ok, "\(consistency.body)")
            let proof = (consistency.json["proof"] as? [String] ?? []).compactMap { Hex.decode($0) }
            #expect(Merkle.verifyConsistency(from: checkpoint.size, to: second.size, first: checkpoint.root, second: second.root, proof: proof))
            let defaulted = try await client.send(.get, "/api/audit/proof?seq=1", token: token)
            #expect((defaulted.json["tree_size"] as? Int ?? 0) >= Int(second.size))

            for bad in [
                "proof?seq=0", "proof?seq=abc", "proof?seq=1&seq=2", "proof", "proof?seq=\(second.size + 1)&tree_size=\(second.size)",
                "proof?seq=1&tree_size=99999999", "proof?seq=-1", "proof?seq=1&tree_size=0", "consistency?from=3&to=2",
                "consistency", "consistency?from=0", "consistency?from=1&to=99999999", "checkpoint?tenant_id=*",
                "proof?seq=99999999999999999999",
            ] {
                let answer = try await client.send(.get, "/api/audit/\(bad)", token: token)
                #expect(answer.status == .badRequest && answer.code == "VALIDATION_FAILED", "\(bad): \(answer.status) \(answer.body)")
            }
            for other in ["checkpoint?tenant_id=\(tenant)x", "proof?seq=1&tenant_id=platform", "consistency?from=1&tenant_id=other"] {
                #expect(try await client.send(.get, "/api/audit/\(other)", token: token).status == .forbidden, "\(other)")
            }
            // Another tenant's reader sees only its own chain, and an empty chain has the empty root.
            await LeadsHarness.grant(host, tenant: tenant + "-b", user: "u-1", ["AUDIT_READ"])
            let outsider = try LeadsHarness.token(key, tenant: tenant + "-b", user: "u-1")
            #expect(try await client.send(.get, "/api/audit/checkpoint?tenant_id=\(tenant)", token: outsider).status == .forbidden)
            let own = try CheckpointNote.verified(
                try await client.send(.get, "/api/audit/checkpoint", token: outsider).body, verifierKey: verifierKey)
            #expect(own.chainID(under: "audit.test.example/log") == tenant + "-b")
        }
    }

    /// Outside development AUDIT_SIGNING_KEY is a required secret: missing or malformed, start-up
    /// stops with a line naming it (and never its value).
    @Test(arguments: [nil, "not-base64-of-32-bytes"])
    func aMissingOrMalformedSigningKeyStopsStartUp(value: String?) async throws {
        var settings = IdentityHarness.hostSettings(1, extra: ["DATABASE_URL": try Backend.sqlite.databaseURL()])
        settings["AUDIT_SIGNING_KEY"] = value
        do {
            _ = try await FunctionHost.build(
                options: .init(scriptRoot: try IdentityHarness.scriptRoot(), port: 0), module: FunctionHostModule(), environment: settings,
                logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
            Issue.record("started without a usable AUDIT_SIGNING_KEY")
        } catch {
            let text = String(describing: error)
            #expect(text.contains("AUDIT_SIGNING_KEY"), "\(text)")
            if let value { #expect(!text.contains(value)) }
        }
    }

    @Test(arguments: Backend.allCases)
    func auditExportIsNDJSONOldestFirstAndAudited(backend: Backend) async throws {
        try await LeadsHarness.run(backend, extra: Self.extra) { host, key, client in
            let tenant = "ex-\(UUID().uuidString.prefix(8))"
            await LeadsHarness.grant(host, tenant: tenant, user: "u-1", ["LEADS_WRITE", "AUDIT_READ", "EXPORTS_EXECUTE"], mfa: true)
            await LeadsHarness.grant(host, tenant: tenant, user: "u-2", ["AUDIT_READ", "EXPORTS_EXECUTE"])
            await LeadsHarness.grant(host, tenant: tenant, user: "u-3", ["EXPORTS_EXECUTE"], mfa: true)
            let token = try LeadsHarness.token(key, tenant: tenant, user: "u-1")
            for index in 0..<4 {
                _ = try await client.send(.post, "/api/leads", token: token, json: #"{"name":"e\#(index)","email":"e@x.example"}"#)
            }
            let export = try await client.send(.post, "/api/exports/audit", token: token)
            #expect(export.status == .ok && export.headers[.contentType] == "application/x-ndjson", "\(export.body)")
            let lines = export.body.split(separator: "\n").map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:] }
            let seqs = lines.compactMap { $0["seq"] as? Int }
            #expect(seqs.count == lines.count && seqs == Array(1...seqs.count), "oldest first, every event of the chain")
            #expect(lines.allSatisfy { $0["chain_id"] as? String == tenant && ($0["current_event_hash"] as? String)?.count == 64 })
            #expect(lines.filter { $0["event_type"] as? String == "LEAD_CREATED" }.count == 4)

            let filtered = try await client.send(.post, "/api/exports/audit?event_type=LEAD_CREATED", token: token)
            #expect(filtered.body.split(separator: "\n").count == 4)
            let audit = try await client.send(.get, "/api/audit?event_type=EXPORT_EXECUTED", token: token)
            let recorded = (audit.json["items"] as? [[String: Any]] ?? []).compactMap { $0["details"] as? [String: Any] }
            #expect(recorded.count == 2 && recorded.allSatisfy { $0["kind"] as? String == "audit" && $0["completed"] as? Bool == true })
            #expect(recorded.contains { $0["rows"] as? Int == 4 })

            let noStepUp = try await client.send(.post, "/api/exports/audit", token: try LeadsHarness.token(key, tenant: tenant, user: "u-2"))
            #expect(noStepUp.status == .forbidden && noStepUp.code == "STEP_UP_REQUIRED")
            let noRead = try await client.send(.post, "/api/exports/audit", token: try LeadsHarness.token(key, tenant: tenant, user: "u-3"))
            #expect(noRead.status == .forbidden && noRead.code == "PERMISSION_DENIED", "\(noRead.body)")
            #expect(try await client.send(.post, "/api/exports/audit?tenant_id=other", token: token).status == .forbidden)

            // until / actor_sub on the listing.
            let mine = try await client.send(.get, "/api/audit?actor_sub=u-1&limit=200", token: token)
            let items = mine.json["items"] as? [[String: Any]] ?? []
            #expect(!items.isEmpty && items.allSatisfy { $0["actor_sub"] as? String == "u-1" })
            #expect((try await client.send(.get, "/api/audit?actor_sub=u-9", token: token).json["items"] as? [Any])?.isEmpty == true)
            let past = try await client.send(.get, "/api/audit?until=2000-01-01T00:00:00Z", token: token)
            #expect((past.json["items"] as? [Any])?.isEmpty == true, "\(past.body)")
            #expect(try await client.send(.get, "/api/audit?until=yesterday", token: token).status == .badRequest)
        }
    }
}

/// A history rewritten behind a signed checkpoint, every hash recomputed: the module refuses to
/// sign again, the verifier reports a break, and a tenant's saved checkpoint no longer verifies.
@Suite(.serialized) struct AuditEquivocationTests {
    @Test func aRewrittenHistoryIsCaughtByTheCheckpoint() async throws {
        try await ScratchDatabase.with { scratch in
            let seed = Array(repeating: UInt8(5), count: 32)
            let signer = try CheckpointSigner(name: CheckpointSigner.defaultOrigin, seed: seed)
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("fnhost-rewrite-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try Data(
                #"{"Values":{"DATABASE_URL":"\#(scratch.url)","AUDIT_SIGNING_KEY":"\#(Data(seed).base64EncodedString())"}}"#.utf8
            ).write(to: root.appendingPathComponent("local.settings.json"))
            let saved = root.appendingPathComponent("checkpoint.txt")
            let chain = "t-rw"

            try await withAuditStore(scratch.url) { store in
                for index in 0..<6 { try await store.append(record(chain, "LEAD_CREATED", ["n": .number(Double(index))])) }
                let tree = AuditTree(store: store)
                let note = try await tree.checkpoint(chain, signer: signer)
                #expect(try await tree.checkpoint(chain, signer: signer) == note, "the same tree: the same stored checkpoint")
                try Data(note.utf8).write(to: saved)
                var verifier = AuditChainVerifier(store: store)
                verifier.signer = signer
                #expect(try await verifier.verify(tenant: chain, full: true).breaks.isEmpty)
            }
            let before = try await StoreCommands.verifyCheckpoint(
                scriptRoot: root.path, checkpointFile: saved.path, verifierKey: nil, logger: ScratchDatabase.logger)
            #expect(before.consistent, "\(before.message)")

            // The insider: drops events 3…6, the tree, and the verifier's position, and appends a new history.
            try await scratch.tamper([
                "DELETE FROM audit_events WHERE chain_id = 't-rw' AND seq >= 3",
                "UPDATE audit_chain_heads SET seq = 2, head_hash = (SELECT current_event_hash FROM audit_events WHERE chain_id = 't-rw' AND seq = 2) WHERE chain_id = 't-rw'",
                "DELETE FROM audit_tree_nodes WHERE chain_id = 't-rw'",
                "DELETE FROM audit_verifier_positions WHERE chain_id = 't-rw'",
            ])
            try await withAuditStore(scratch.url) { store in
                for index in 0..<4 { try await store.append(record(chain, "LEAD_DELETED", ["n": .number(Double(index))])) }
                var verifier = AuditChainVerifier(store: store)
                verifier.signer = signer
                for full in [true, false] {
                    let breaks = try await verifier.verify(tenant: chain, full: full).breaks
                    #expect(breaks.map(\.reason) == [.checkpointInconsistent], "full: \(full)")
                }
                await #expect(throws: AuditTree.Inconsistent.self) { _ = try await AuditTree(store: store).checkpoint(chain, signer: signer) }
            }
            let after = try await StoreCommands.verifyCheckpoint(
                scriptRoot: root.path, checkpointFile: saved.path, verifierKey: nil, logger: ScratchDatabase.logger)
            #expect(!after.consistent && after.message.contains("rewritten"), "\(after.message)")
            let otherKey = try CheckpointSigner(name: CheckpointSigner.defaultOrigin, seed: Array(repeating: 6, count: 32)).verifierKey
            let wrongKey = try await StoreCommands.verifyCheckpoint(
                scriptRoot: root.path, checkpointFile: saved.path, verifierKey: otherKey, logger: ScratchDatabase.logger)
            #expect(!wrongKey.consistent)
            await #expect(throws: (any Error).self) {
                _ = try await StoreCommands.verifyCheckpoint(
                    scriptRoot: root.path, checkpointFile: root.appendingPathComponent("missing").path, verifierKey: nil,
                    logger: ScratchDatabase.logger)
            }
        }
    }
}

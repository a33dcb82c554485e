import FunctionRuntime
import HTTPTypes
import Logging
import NIOCore

/// The chain a proof endpoint reads (`tenant_id` as for `GET /api/audit`, but one chain, never `*`).
private func provenChain(_ request: FunctionRequest, principal: Principal) throws(FunctionError) -> String {
    guard case .chain(let chain) = try ListAuditEvents.scope(request, principal: principal, allowAll: false) else {
        throw .validationFailed("parameter 'tenant_id' must name one chain")
    }
    return chain.text
}

/// A whole number from a query parameter, in `range`.
private func count(_ request: FunctionRequest, _ name: String, in range: ClosedRange<Int64>) throws(FunctionError) -> Int64? {
    guard let text = try request.singleQuery(name) else { return nil }
    guard (1...19).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int64(text),
        range.contains(value)
    else { throw .validationFailed("parameter '\(name)' must be a whole number from \(range.lowerBound)") }
    return value
}

/// `"name": [hex, …]`.
private func writeHashes(_ name: String, _ hashes: [Merkle.Hash], to writer: inout JSONWriter) {
    writer.key(name)
    writer.beginArray()
    for hash in hashes {
        writer.comma()
        writer.string(Hex.encode(hash))
    }
    writer.endArray()
}

private func storeError(_ error: any Error) -> FunctionError {
    (error as? StoreUnavailable)?.functionError ?? .serviceUnavailable("the audit log is unavailable; try again shortly")
}

/// `GET /api/audit/checkpoint?tenant_id=` — the chain's signed checkpoint (C2SP tlog-checkpoint, text/plain).
struct GetAuditCheckpoint: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.auditRead)
    let tree: AuditTree
    let keys: CheckpointKeys

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let chain = try provenChain(request, principal: principal)
        let signer = try await keys.signer()
        let note: String
        do {
            note = try await tree.checkpoint(chain, signer: signer)
        } catch let inconsistent as AuditTree.Inconsistent {
            request.logger.critical("audit checkpoint refused", metadata: ["chain_id": .string(chain), "reason": .string(inconsistent.description)])
            throw FunctionError(
                status: .internalServerError, code: "INTERNAL",
                message: "the audit log no longer matches a checkpoint it signed; no new checkpoint is signed")
        } catch {
            throw storeError(error)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return FunctionResponse(status: .ok, headers: headers, body: .bytes(ByteBuffer(string: note)))
    }
}

/// `GET /api/audit/proof?seq=N&tree_size=M&tenant_id=` — the inclusion proof of event `seq` in the
/// tree of `M` leaves (default: the current size).
struct GetAuditProof: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.auditRead)
    let tree: AuditTree

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let chain = try provenChain(request, principal: principal)
        guard let seq = try count(request, "seq", in: 1...Int64.max) else { throw FunctionError.validationFailed("parameter 'seq' is required") }
        let requestedSize = try count(request, "tree_size", in: 1...Int64.max)
        let current: Int64
        do {
            current = try await tree.extend(chain)
        } catch {
            throw storeError(error)
        }
        let size = requestedSize ?? current
        guard size <= current else { throw FunctionError.validationFailed("parameter 'tree_size' is larger than the chain (\(current) events)") }
        guard seq <= size else { throw FunctionError.validationFailed("parameter 'seq' must not exceed the tree size (\(size))") }
        let leaf = seq - 1
        let proof: (leaf: Merkle.Hash, path: [Merkle.Hash])
        do {
            proof = try await tree.withNodes(chain) { nodes in
                (nodes(TreeNode(level: 0, index: leaf)), Merkle.inclusionProof(leaf: leaf, size: size, nodes))
            }
        } catch {
            throw storeError(error)
        }
        return .json { writer in
            writer.beginObject()
            writer.field("chain_id", chain)
            writer.field("seq", Int(seq))
            writer.field("leaf_index", Int(leaf))
            writer.field("tree_size", Int(size))
            writer.field("leaf_hash", Hex.encode(proof.leaf))
            writeHashes("inclusion", proof.path, to: &writer)
            writer.endObject()
        }
    }
}

/// `GET /api/audit/consistency?from=M1&to=M2&tenant_id=` — that the tree of `M1` leaves is a prefix
/// of the tree of `M2` (default: the current size).
struct GetAuditConsistency: AuthorizedFunction {
    static let policy = FunctionPolicy.requires(.auditRead)
    let tree: AuditTree

    func handle(_ request: FunctionRequest, principal: Principal) async throws -> FunctionResponse {
        let chain = try provenChain(request, principal: principal)
        guard let from = try count(request, "from", in: 1...Int64.max) else { throw FunctionError.validationFailed("parameter 'from' is required") }
        let requestedTo = try count(request, "to", in: 1...Int64.max)
        let current: Int64
        do {
            current = try await tree.extend(chain)
        } catch {
            throw storeError(error)
        }
        let to = requestedTo ?? current
        guard to <= current else { throw FunctionError.validationFailed("parameter 'to' is larger than the chain (\(current) events)") }
        guard from <= to else { throw FunctionError.validationFailed("parameter 'from' must not exceed 'to' (\(to))") }
        let proof: [Merkle.Hash]
        do {
            proof = try await tree.withNodes(chain) { Merkle.consistencyProof(from: from, to: to, $0) }
        } catch {
            throw storeError(error)
        }
        return .json { writer in
            writer.beginObject()
            writer.field("chain_id", chain)
            writer.field("from", Int(from))
            writer.field("to", Int(to))
            writeHashes("proof", proof, to: &writer)
            writer.endObject()
        }
    }
}

/// `GET /api/audit/verifier-key` — the key that verifies every checkpoint (no authentication: it is public).
struct GetAuditVerifierKey: HTTPFunction {
    let keys: CheckpointKeys

    func handle(_ request: FunctionRequest) async throws -> FunctionResponse {
        let signer = try await keys.signer()
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return FunctionResponse(status: .ok, headers: headers, body: .bytes(ByteBuffer(string: signer.verifierKey)))
    }
}

import FunctionRuntime

/// The OpenAPI side of `GET /api/audit`, the proofs of docs/audit.md and the audit export.
enum AuditOpenAPI {
    private static func string(_ extra: [String: JSONValue] = [:]) -> JSONValue {
        .object(["type": .string("string")].merging(extra) { $1 })
    }

    private static let nullableString: JSONValue = .object(["type": .array([.string("string"), .string("null")])])
    private static let hash = string(["pattern": .string("^[0-9a-f]{64}$")])

    static let schemas: [String: JSONValue] = [
        "AuditEvent": .object([
            "type": .string("object"),
            "required": .array(
                [
                    "chain_id", "seq", "event_id", "tenant_id", "occurred_at", "actor_sub", "actor_email", "event_type", "severity",
                    "details", "prev_event_hash", "current_event_hash",
                ].map(JSONValue.string)),
            "properties": .object([
                "chain_id": string(),
                "seq": .object(["type": .string("integer"), "minimum": .number(1)]),
                "event_id": string(["format": .string("uuid")]),
                "tenant_id": nullableString,
                "occurred_at": string(["pattern": .string("^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")]),
                "actor_sub": nullableString,
                "actor_email": nullableString,
                "event_type": string(),
                "severity": .object(["type": .string("string"), "enum": .array(["info", "warning", "high", "critical"].map(JSONValue.string))]),
                "details": .object(["type": .string("object")]),
                "prev_event_hash": hash,
                "current_event_hash": hash,
            ]),
        ]),
        "AuditPage": .object([
            "type": .string("object"),
            "required": .array([.string("items"), .string("next_cursor")]),
            "properties": .object([
                "items": .object(["type": .string("array"), "items": .object(["$ref": .string("#/components/schemas/AuditEvent")])]),
                "next_cursor": .object(["type": .array([.string("string"), .string("null")])]),
            ]),
        ]),
        "AuditInclusionProof": .object([
            "type": .string("object"),
            "required": .array(["chain_id", "seq", "leaf_index", "tree_size", "leaf_hash", "inclusion"].map(JSONValue.string)),
            "properties": .object([
                "chain_id": string(),
                "seq": .object(["type": .string("integer"), "minimum": .number(1)]),
                "leaf_index": .object(["type": .string("integer"), "minimum": .number(0)]),
                "tree_size": .object(["type": .string("integer"), "minimum": .number(1)]),
                "leaf_hash": hash,
                "inclusion": .object(["type": .string("array"), "items": hash]),
            ]),
        ]),
        "AuditConsistencyProof": .object([
            "type": .string("object"),
            "required": .array(["chain_id", "from", "to", "proof"].map(JSONValue.string)),
            "properties": .object([
                "chain_id": string(),
                "from": .object(["type": .string("integer"), "minimum": .number(1)]),
                "to": .object(["type": .string("integer"), "minimum": .number(1)]),
                "proof": .object(["type": .string("array"), "items": hash]),
            ]),
        ]),
    ]

    private static let oneChain = OpenAPIOperation.Parameter(
        name: "tenant_id", schema: string(["pattern": .string(ListAuditEvents.tenantPattern)]),
        description: "default: the caller's tenant; another tenant or `platform` for a super admin")
    private static func count(_ name: String, required: Bool = false, _ description: String) -> OpenAPIOperation.Parameter {
        .init(
            name: name, required: required, schema: .object(["type": .string("integer"), "minimum": .number(1), "maximum": .number(9_007_199_254_740_991)]),
            description: description)
    }


    static let operations: [String: OpenAPIOperation] = [
        "ListAuditEvents": OpenAPIOperation(
            summary: "Audit events, newest first (another tenant or * for a platform super admin only)", requiresBearer: true,
            query: [
                .init(
                    name: "tenant_id", schema: string(["pattern": .string(ListAuditEvents.tenantPattern)]),
                    description: "default: the caller's tenant; `platform` or `*` (every chain) for a super admin"),
                .init(name: "event_type", schema: string(["pattern": .string(ListAuditEvents.eventTypePattern)])),
                .init(name: "since", schema: string(["format": .string("date-time")]), description: "RFC 3339; events at or after"),
                .init(name: "until", schema: string(["format": .string("date-time")]), description: "RFC 3339; events at or before"),
                .init(name: "actor_sub", schema: string(["pattern": .string(ListAuditEvents.tenantPattern)]), description: "events by this actor"),
                .init(name: "limit", schema: .object(["type": .string("integer"), "minimum": .number(1), "maximum": .number(200), "default": .number(50)])),
                .init(
                    name: "cursor", schema: string(["pattern": .string("^[0-9]{1,16}_[0-9]{1,19}_.{1,128}$")]),
                    description: "next_cursor of the previous page"),
            ],
            responses: [200: .json("A page of audit events", .object(["$ref": .string("#/components/schemas/AuditPage")]))],
            errors: [400, 403]),
        "GetAuditCheckpoint": OpenAPIOperation(
            summary: "The chain's signed checkpoint: a C2SP tlog-checkpoint note (origin, tree size, base64 root) signed with Ed25519",
            requiresBearer: true, query: [oneChain],
            responses: [200: OpenAPIOperation.Response(description: "The signed checkpoint note", contentType: "text/plain", schema: string())],
            errors: [400, 403, 500]),
        "GetAuditProof": OpenAPIOperation(
            summary: "RFC 6962 inclusion proof of event seq in the chain's tree of tree_size leaves", requiresBearer: true,
            query: [count("seq", required: true, "the event (leaf index seq - 1)"), count("tree_size", "default: the current size"), oneChain],
            responses: [200: .json("The inclusion proof", .object(["$ref": .string("#/components/schemas/AuditInclusionProof")]))],
            errors: [400, 403]),
        "GetAuditConsistency": OpenAPIOperation(
            summary: "RFC 6962 consistency proof between the chain's trees of from and to leaves", requiresBearer: true,
            query: [count("from", required: true, "the earlier tree size"), count("to", "default: the current size"), oneChain],
            responses: [200: .json("The consistency proof", .object(["$ref": .string("#/components/schemas/AuditConsistencyProof")]))],
            errors: [400, 403]),
        "GetAuditVerifierKey": OpenAPIOperation(
            summary: "The note verifier key of every checkpoint: name+keyid+base64(0x01 || Ed25519 public key)",
            responses: [200: OpenAPIOperation.Response(description: "The verifier key", contentType: "text/plain", schema: string())],
            errors: []),
        "ExportAuditEvents": OpenAPIOperation(
            summary: "Audit events as NDJSON, oldest first (needs AUDIT_READ, EXPORTS_EXECUTE and step-up)", requiresBearer: true,
            query: [
                .init(
                    name: "tenant_id", schema: string(["pattern": .string(ListAuditEvents.tenantPattern)]),
                    description: "default: the caller's tenant; another tenant, `platform` or `*` for a super admin"),
                .init(name: "event_type", schema: string(["pattern": .string(ListAuditEvents.eventTypePattern)])),
                .init(name: "since", schema: string(["format": .string("date-time")]), description: "RFC 3339; events at or after"),
                .init(name: "until", schema: string(["format": .string("date-time")]), description: "RFC 3339; events at or before"),
                .init(name: "actor_sub", schema: string(["pattern": .string(ListAuditEvents.tenantPattern)])),
            ],
            responses: [200: OpenAPIOperation.Response(description: "One AuditEvent per line", contentType: "application/x-ndjson", schema: string())],
            errors: [400, 403]),
    ]
}

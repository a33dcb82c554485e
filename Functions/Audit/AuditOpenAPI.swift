import FunctionRuntime

/// The OpenAPI side of `GET /api/audit`.
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
    ]

    static let operations: [String: OpenAPIOperation] = [
        "ListAuditEvents": OpenAPIOperation(
            summary: "Audit events, newest first (another tenant or * for a platform super admin only)", requiresBearer: true,
            query: [
                .init(
                    name: "tenant_id", schema: string(["pattern": .string(ListAuditEvents.tenantPattern)]),
                    description: "default: the caller's tenant; `platform` or `*` (every chain) for a super admin"),
                .init(name: "event_type", schema: string(["pattern": .string(ListAuditEvents.eventTypePattern)])),
                .init(name: "since", schema: string(["format": .string("date-time")]), description: "RFC 3339; events at or after"),
                .init(name: "limit", schema: .object(["type": .string("integer"), "minimum": .number(1), "maximum": .number(200), "default": .number(50)])),
                .init(
                    name: "cursor", schema: string(["pattern": .string("^[0-9]{1,16}_[0-9]{1,19}_.{1,128}$")]),
                    description: "next_cursor of the previous page"),
            ],
            responses: [200: .json("A page of audit events", .object(["$ref": .string("#/components/schemas/AuditPage")]))],
            errors: [400, 403]),
    ]
}

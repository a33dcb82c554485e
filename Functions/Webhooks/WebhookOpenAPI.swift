import FunctionRuntime

/// The OpenAPI side of `POST /webhooks/rbac-changed` and `POST /webhooks/sessions-revoked`.
enum WebhookOpenAPI {
    private static func string(_ extra: [String: JSONValue] = [:]) -> JSONValue {
        .object(["type": .string("string")].merging(extra) { $1 })
    }

    static let schemas: [String: JSONValue] = [
        "RBACChanged": .object([
            "type": .string("object"),
            "required": .array([.string("tenant_id")]),
            "properties": .object([
                "tenant_id": string(["minLength": .number(1), "maxLength": .number(128)]),
                "user_id": .object(["type": .array([.string("string"), .string("null")]), "minLength": .number(1), "maxLength": .number(128)]),
            ]),
        ]),
        "SessionsRevoked": .object([
            "type": .string("object"),
            "required": .array([.string("tenant_id")]),
            "properties": .object([
                "tenant_id": string(["minLength": .number(1), "maxLength": .number(128)]),
                "user_id": .object(["type": .array([.string("string"), .string("null")]), "minLength": .number(1), "maxLength": .number(128)]),
                "jti": .object(["type": .array([.string("string"), .string("null")]), "minLength": .number(1), "maxLength": .number(256)]),
                "revoked_before": .object([
                    "type": .array([.string("integer"), .string("null")]), "minimum": .number(0),
                    "description": .string("unix seconds; tokens issued at or before it are revoked (default: now)"),
                ]),
            ]),
        ]),
    ]

    static let signatureHeaders: [OpenAPIOperation.Parameter] = [
        .init(name: "webhook-id", required: true, schema: string(["minLength": .number(1), "maxLength": .number(256)])),
        .init(name: "webhook-timestamp", required: true, schema: string(["pattern": .string("^[0-9]{1,12}$")]), description: "unix seconds"),
        .init(
            name: "webhook-signature", required: true, schema: string(),
            description: "space-separated v1,BASE64(HMAC-SHA256(whsec key, id.timestamp.body))"),
    ]

    static let operations: [String: OpenAPIOperation] = [
        "PurgeRBACCache": OpenAPIOperation(
            summary: "The host's RBAC changed: purge the cached answers of a user (or of the whole tenant without user_id)",
            headers: signatureHeaders,
            requestBody: .object(["$ref": .string("#/components/schemas/RBACChanged")]),
            responses: [204: .init(description: "Purged (or a replayed webhook-id, ignored)")],
            errors: [400, 401, 503]),
        "RevokeSessions": OpenAPIOperation(
            summary: "The host revoked sessions: one token (jti), a user's or a whole tenant's tokens issued at or before revoked_before",
            headers: signatureHeaders,
            requestBody: .object(["$ref": .string("#/components/schemas/SessionsRevoked")]),
            responses: [204: .init(description: "Stored and published to every instance (or a replayed webhook-id, ignored)")],
            errors: [400, 401, 503]),
    ]
}

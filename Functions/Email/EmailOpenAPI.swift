import FunctionRuntime

/// The OpenAPI side of `POST /api/emails`.
enum EmailOpenAPI {
    static let schemas: [String: JSONValue] = [
        "EmailInput": .object([
            "type": .string("object"),
            "additionalProperties": .bool(false),
            "required": .array([.string("template"), .string("to")]),
            "properties": .object([
                "template": .object(["type": .string("string"), "pattern": .string(SendEmail.templatePattern)]),
                "to": .object(["type": .string("string"), "format": .string("email"), "maxLength": .number(254)]),
                "vars": .object(["type": .string("object")]),
            ]),
        ]),
        "EmailAccepted": .object([
            "type": .string("object"),
            "required": .array([.string("status"), .string("message_id"), .string("idempotency_key")]),
            "properties": .object([
                "status": .object(["type": .string("string"), "enum": .array([.string("sent"), .string("queued")])]),
                "message_id": .object(["type": .array([.string("string"), .string("null")])]),
                "idempotency_key": .object(["type": .string("string")]),
            ]),
        ]),
    ]

    static let operations: [String: OpenAPIOperation] = [
        "SendEmail": OpenAPIOperation(
            summary: "Ask the host to send an email (through the outbox: sent now, or queued and retried)", requiresBearer: true,
            headers: [
                .init(
                    name: "Idempotency-Key", schema: .object(["type": .string("string"), "pattern": .string("^[!-~]{1,255}$")]),
                    description: "the same key from the same tenant yields the same idempotency_key and message_id")
            ],
            requestBody: .object(["$ref": .string("#/components/schemas/EmailInput")]),
            responses: [202: .json("Accepted", .object(["$ref": .string("#/components/schemas/EmailAccepted")]))],
            errors: [400, 413, 415, 422]),
    ]
}

import FunctionRuntime

/// The OpenAPI side of the leads functions: schemas and one operation per function.
enum LeadsOpenAPI {
    private static func string(_ extra: [String: JSONValue] = [:]) -> JSONValue {
        .object(["type": .string("string")].merging(extra) { $1 })
    }

    /// No string input may hold U+0000 (docs/api.md: 400); the schemas say so, so generated clients and
    /// schemathesis know it.
    static let noNUL = "^[^\\u0000]*$"

    /// Addresses `LeadFields.isEmail` accepts, written so a generator cannot leave its rules (local
    /// part ≤ 64 bytes, labels ≤ 63, domain ≤ 253).
    static let emailPattern =
        "^[A-Za-z0-9_%+-]{1,32}(\\.[A-Za-z0-9_%+-]{1,15}){0,2}@([A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?\\.){1,4}[A-Za-z]{1,20}$"

    private static func nullableString(maxLength: Int, input: Bool = false) -> JSONValue {
        var schema: [String: JSONValue] = ["type": .array([.string("string"), .string("null")]), "maxLength": .number(Double(maxLength))]
        if input { schema["pattern"] = .string(noNUL) }
        return .object(schema)
    }

    static let status: JSONValue = .object(["type": .string("string"), "enum": .array(LeadLimits.statuses.sorted().map(JSONValue.string))])
    static let idPath: [String: JSONValue] = ["id": .object(["type": .string("string"), "format": .string("uuid")])]
    static let leadRef: JSONValue = .object(["$ref": .string("#/components/schemas/Lead")])

    static let schemas: [String: JSONValue] = [
        "Lead": .object([
            "type": .string("object"),
            "required": .array(["id", "name", "email", "phone", "company", "status", "notes", "created_by", "created_at", "updated_at"].map(JSONValue.string)),
            "properties": .object([
                "id": string(["format": .string("uuid")]),
                "name": string(["minLength": .number(1), "maxLength": .number(Double(LeadLimits.name))]),
                "email": string(["format": .string("email")]),
                "phone": nullableString(maxLength: LeadLimits.phone),
                "company": nullableString(maxLength: LeadLimits.company),
                "status": status,
                "notes": nullableString(maxLength: LeadLimits.notes),
                "created_by": string(),
                "created_at": string(["format": .string("date-time")]),
                "updated_at": string(["format": .string("date-time")]),
            ]),
        ]),
        "LeadInput": .object([
            "type": .string("object"),
            "additionalProperties": .bool(false),
            "required": .array([.string("name"), .string("email")]),
            "properties": inputProperties,
        ]),
        "LeadPatch": .object([
            "type": .string("object"),
            "additionalProperties": .bool(false),
            "properties": inputProperties,
        ]),
        "LeadPage": .object([
            "type": .string("object"),
            "required": .array([.string("items"), .string("next_cursor")]),
            "properties": .object([
                "items": .object(["type": .string("array"), "items": leadRef]),
                "next_cursor": .object(["type": .array([.string("string"), .string("null")])]),
            ]),
        ]),
    ]

    private static let inputProperties: JSONValue = .object([
        "name": string([
            "minLength": .number(1), "maxLength": .number(Double(LeadLimits.name)), "pattern": .string("^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"),
        ]),
        "email": string(["format": .string("email"), "maxLength": .number(Double(LeadLimits.email)), "pattern": .string(emailPattern)]),
        "phone": nullableString(maxLength: LeadLimits.phone, input: true),
        "company": nullableString(maxLength: LeadLimits.company, input: true),
        "status": status,
        "notes": nullableString(maxLength: LeadLimits.notes, input: true),
        "tenant_id": .object([
            "type": .array([.string("string"), .string("null")]), "pattern": .string(noNUL),
            "description": .string("Ignored: the tenant comes from the token."),
        ]),
    ])

    static let operations: [String: OpenAPIOperation] = [
        "ListLeads": OpenAPIOperation(
            summary: "The tenant's leads, newest first", requiresBearer: true,
            query: [
                .init(name: "limit", schema: .object(["type": .string("integer"), "minimum": .number(1), "maximum": .number(200), "default": .number(50)])),
                .init(name: "cursor", schema: string(["pattern": .string(LeadCursor.pattern)]), description: "next_cursor of the previous page"),
            ],
            responses: [200: .json("A page of leads", .object(["$ref": .string("#/components/schemas/LeadPage")]))],
            errors: [400]),
        "CreateLead": OpenAPIOperation(
            summary: "Create a lead (retry safely with an Idempotency-Key)", requiresBearer: true,
            headers: [
                .init(
                    name: "Idempotency-Key", schema: .object(["type": .string("string"), "pattern": .string("^[!-~]{1,255}$")]),
                    description: "tenant-scoped: the same key and body answer the first 201 again without a second lead")
            ],
            requestBody: .object(["$ref": .string("#/components/schemas/LeadInput")]),
            responses: [201: .json("The lead", leadRef)], errors: [400, 413, 415, 422]),
        "GetLead": OpenAPIOperation(
            summary: "One lead", requiresBearer: true, pathSchemas: idPath, responses: [200: .json("The lead", leadRef)], errors: [400, 404]),
        "UpdateLead": OpenAPIOperation(
            summary: "Change a lead's fields", requiresBearer: true, pathSchemas: idPath,
            requestBody: .object(["$ref": .string("#/components/schemas/LeadPatch")]),
            responses: [200: .json("The lead", leadRef)], errors: [400, 404, 413, 415]),
        "DeleteLead": OpenAPIOperation(
            summary: "Delete a lead (step-up required)", requiresBearer: true, pathSchemas: idPath,
            responses: [204: .init(description: "Deleted")], errors: [400, 404]),
        "ExportLeads": OpenAPIOperation(
            summary: "The tenant's leads as CSV (step-up required)", requiresBearer: true,
            responses: [200: .init(description: "RFC 4180 CSV", contentType: "text/csv", schema: string())]),
        "Health": OpenAPIOperation(
            summary: "Liveness",
            responses: [200: .json("Up", .object(["type": .string("object"), "required": .array([.string("status")]),
                                                  "properties": .object(["status": .object(["const": .string("ok")])])]))]),
        "HealthReady": OpenAPIOperation(
            summary: "Readiness: database and cache answer",
            responses: [200: .json("Ready", .object(["type": .string("object"), "required": .array([.string("status")])]))],
            errors: [503]),
    ]
}

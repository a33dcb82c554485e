/// What an HTTP function declares about itself for the OpenAPI document, next to its handler.
public struct OpenAPIOperation: Sendable {
    public struct Parameter: Sendable {
        public var name: String
        public var required: Bool
        public var schema: JSONValue
        public var description: String

        public init(name: String, required: Bool = false, schema: JSONValue, description: String = "") {
            self.name = name
            self.required = required
            self.schema = schema
            self.description = description
        }
    }

    public struct Response: Sendable {
        public var description: String
        public var contentType: String?
        public var schema: JSONValue?

        public init(description: String, contentType: String? = nil, schema: JSONValue? = nil) {
            self.description = description
            self.contentType = contentType
            self.schema = schema
        }

        public static func json(_ description: String, _ schema: JSONValue) -> Response {
            Response(description: description, contentType: "application/json", schema: schema)
        }
    }

    public var summary: String
    public var requiresBearer: Bool
    /// Schemas for path parameters, by name (default: from the route constraint, else string).
    public var pathSchemas: [String: JSONValue]
    public var query: [Parameter]
    public var headers: [Parameter]
    /// A JSON request body schema (`application/json`), required when present.
    public var requestBody: JSONValue?
    public var responses: [Int: Response]
    /// Statuses answered with the contract's error shape.
    public var errors: [Int]

    public init(
        summary: String, requiresBearer: Bool = false, pathSchemas: [String: JSONValue] = [:], query: [Parameter] = [],
        headers: [Parameter] = [], requestBody: JSONValue? = nil, responses: [Int: Response], errors: [Int] = []
    ) {
        self.summary = summary
        self.requiresBearer = requiresBearer
        self.pathSchemas = pathSchemas
        self.query = query
        self.headers = headers
        self.requestBody = requestBody
        self.responses = responses
        self.errors = errors
    }
}

/// Assembles the OpenAPI 3.1 document of every HTTP function from the manifest (paths, methods,
/// path parameters) and what each function declares (summary, inputs, responses), so it cannot
/// drift from what is served.
enum OpenAPIDocument {
    /// The runtime's own error codes by status (`FunctionError`); a module adds its own through
    /// `ModuleContext.describeErrors`.
    static let runtimeErrorCodes: [Int: [String]] = [
        400: ["VALIDATION_FAILED"], 404: ["NOT_FOUND"], 413: ["PAYLOAD_TOO_LARGE"], 415: ["UNSUPPORTED_MEDIA_TYPE"],
        429: ["RATE_LIMITED"], 500: ["INTERNAL"], 503: ["SERVICE_UNAVAILABLE"],
    ]

    /// "A or B" per status: the module's codes first, then the runtime's.
    static func errorDescriptions(module: [Int: [String]]) -> [Int: String] {
        var codes = module
        for (status, runtime) in runtimeErrorCodes { codes[status, default: []] += runtime.filter { !(module[status] ?? []).contains($0) } }
        return codes.mapValues { $0.joined(separator: " or ") }
    }

    static func build(
        catalog: FunctionCatalog, operations: [String: OpenAPIOperation], schemas: [String: JSONValue], title: String,
        version: String, errorCodes: [Int: [String]] = [:]
    ) -> JSONValue {
        let errorDescriptions = errorDescriptions(module: errorCodes)
        var paths: [String: [String: JSONValue]] = [:]
        for function in catalog.functions where !function.spec.disabled {
            guard let http = function.spec.httpTrigger else { continue }
            let operation = operations[function.name] ?? OpenAPIOperation(
                summary: function.name, responses: [200: OpenAPIOperation.Response(description: "OK")])
            var pathText = ""
            var pathParameters: [JSONValue] = []
            for segment in http.route.segments {
                switch segment {
                case .literal(let text): pathText += "/" + text
                case .parameter(let name, let constraint):
                    pathText += "/{\(name)}"
                    pathParameters.append(
                        parameter(name: name, in: "path", required: true, schema: operation.pathSchemas[name] ?? schema(for: constraint)))
                case .catchAll(let name):
                    pathText += "/{\(name)}"
                    pathParameters.append(parameter(name: name, in: "path", required: true, schema: .object(["type": .string("string")])))
                }
            }
            if pathText.isEmpty { pathText = "/" }
            for method in http.methods ?? [.get] {
                paths[pathText, default: [:]][method.rawValue.lowercased()] = describe(
                    function.name, operation, pathParameters: pathParameters, errorDescriptions: errorDescriptions)
            }
        }
        var errorSchema: [String: JSONValue] = [:]
        errorSchema["type"] = .string("object")
        errorSchema["required"] = .array([.string("error")])
        errorSchema["properties"] = .object([
            "error": .object([
                "type": .string("object"),
                "required": .array(["code", "message", "request_id"].map(JSONValue.string)),
                "properties": .object([
                    "code": .object(["type": .string("string")]),
                    "message": .object(["type": .string("string")]),
                    "request_id": .object(["type": .string("string")]),
                ]),
            ])
        ])
        var allSchemas = schemas
        allSchemas["Error"] = .object(errorSchema)
        return .object([
            "openapi": .string("3.1.0"),
            "info": .object(["title": .string(title), "version": .string(version)]),
            "paths": .object(paths.mapValues { .object($0) }),
            "components": .object([
                "schemas": .object(allSchemas),
                "securitySchemes": .object([
                    "bearer": .object(["type": .string("http"), "scheme": .string("bearer"), "bearerFormat": .string("JWT")])
                ]),
            ]),
        ])
    }

    private static func describe(
        _ name: String, _ operation: OpenAPIOperation, pathParameters: [JSONValue], errorDescriptions: [Int: String]
    ) -> JSONValue {
        var object: [String: JSONValue] = ["operationId": .string(name), "summary": .string(operation.summary)]
        let parameters = pathParameters
            + operation.query.map { parameter(name: $0.name, in: "query", required: $0.required, schema: $0.schema, description: $0.description) }
            + operation.headers.map { parameter(name: $0.name, in: "header", required: $0.required, schema: $0.schema, description: $0.description) }
        if !parameters.isEmpty { object["parameters"] = .array(parameters) }
        if let body = operation.requestBody {
            object["requestBody"] = .object([
                "required": .bool(true),
                "content": .object(["application/json": .object(["schema": body])]),
            ])
        }
        var responses: [String: JSONValue] = [:]
        for (status, response) in operation.responses {
            var entry: [String: JSONValue] = ["description": .string(response.description)]
            if let type = response.contentType {
                entry["content"] = .object([type: .object(response.schema.map { ["schema": $0] } ?? [:])])
            }
            responses[String(status)] = .object(entry)
        }
        var errors = Set(operation.errors).union([500])
        if operation.requiresBearer { errors.formUnion([401, 403, 429, 503]) }
        for status in errors.sorted() where responses[String(status)] == nil {
            responses[String(status)] = .object([
                "description": .string(errorDescriptions[status] ?? "error"),
                "content": .object(["application/json": .object(["schema": .object(["$ref": .string("#/components/schemas/Error")])])]),
            ])
        }
        object["responses"] = .object(responses)
        object["security"] = operation.requiresBearer ? .array([.object(["bearer": .array([])])]) : .array([])
        return .object(object)
    }

    private static func parameter(name: String, in location: String, required: Bool, schema: JSONValue, description: String = "") -> JSONValue {
        var object: [String: JSONValue] = [
            "name": .string(name), "in": .string(location), "required": .bool(required), "schema": schema,
        ]
        if !description.isEmpty { object["description"] = .string(description) }
        return .object(object)
    }

    private static func schema(for constraint: RouteTemplate.Constraint?) -> JSONValue {
        switch constraint {
        case .int?, .long?: .object(["type": .string("integer")])
        case .bool?: .object(["type": .string("boolean")])
        case .guid?: .object(["type": .string("string"), "format": .string("uuid")])
        default: .object(["type": .string("string")])
        }
    }
}

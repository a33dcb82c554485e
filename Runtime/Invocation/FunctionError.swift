import HTTPTypes

/// The one error type a function (or the runtime) throws to answer a request with an error.
///
/// Rendered as the contract's error shape:
/// `{"error":{"code":"...","message":"...","request_id":"..."}}`.
/// Any other error escaping a handler becomes `500 INTERNAL` with a generic message:
/// internals never reach the client.
public struct FunctionError: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields

    public init(status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public static func validationFailed(_ message: String) -> FunctionError {
        FunctionError(status: .badRequest, code: "VALIDATION_FAILED", message: message)
    }

    public static func notFound(_ message: String = "no such resource") -> FunctionError {
        FunctionError(status: .notFound, code: "NOT_FOUND", message: message)
    }

    public static func methodNotAllowed(allowed: [HTTPRequest.Method]) -> FunctionError {
        var headers = HTTPFields()
        headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
        return FunctionError(
            status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED",
            message: "method not allowed on this route", headers: headers)
    }

    public static let payloadTooLarge = FunctionError(
        status: .contentTooLarge, code: "PAYLOAD_TOO_LARGE", message: "request body exceeds 1 MiB")

    /// 413 naming the limit that applied (`what` exceeds N MiB).
    public static func payloadTooLarge(limit: Int, what: String) -> FunctionError {
        FunctionError(status: .contentTooLarge, code: "PAYLOAD_TOO_LARGE", message: "\(what) exceeds \(limit >> 20) MiB")
    }

    public static func unsupportedMediaType(_ message: String = "request body must be application/json") -> FunctionError {
        FunctionError(status: .unsupportedMediaType, code: "UNSUPPORTED_MEDIA_TYPE", message: message)
    }

    public static func permissionDenied(_ message: String) -> FunctionError {
        FunctionError(status: .forbidden, code: "PERMISSION_DENIED", message: message)
    }

    public static func unauthenticated(_ message: String) -> FunctionError {
        var headers = HTTPFields()
        headers[.wwwAuthenticate] = "Bearer error=\"invalid_token\""
        return FunctionError(status: .unauthorized, code: "UNAUTHENTICATED", message: message, headers: headers)
    }

    public static func serviceUnavailable(_ message: String) -> FunctionError {
        FunctionError(status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE", message: message)
    }

    public static let internalError = FunctionError(
        status: .internalServerError, code: "INTERNAL", message: "internal error")

    /// The contract's JSON body for this error.
    public func body(requestID: String) -> [UInt8] {
        var writer = JSONWriter(capacity: 96 + message.utf8.count)
        writer.beginObject()
        writer.key("error")
        writer.beginObject()
        writer.field("code", code)
        writer.field("message", message)
        writer.field("request_id", requestID)
        writer.endObject()
        writer.endObject()
        return writer.bytes
    }
}

extension FunctionError {
    /// A request body that must be a JSON object: its members, or a 400 in the contract's shape
    /// (a NUL names its field; anything else, including a non-object, gets `message`).
    public static func jsonObject(_ body: some Collection<UInt8>, _ message: String) throws(FunctionError) -> [String: JSONValue] {
        let document: JSONValue
        do {
            document = try JSONReader.parse(body)
        } catch {
            throw invalidJSON(error, message)
        }
        guard case .object(let object) = document else { throw validationFailed(message) }
        return object
    }

    /// A body that did not read as JSON: a NUL names its field, anything else gets `message`.
    public static func invalidJSON(_ error: JSONReadError, _ message: String) -> FunctionError {
        if case .nul = error.reason { return .validationFailed(error.description) }
        if case .tooDeep = error.reason { return .validationFailed("body nests deeper than \(JSONReader.defaultMaxDepth) levels") }
        return .validationFailed(message)
    }
}

import HTTPTypes
import NIOCore

/// Where a streamed response body goes; the hosting mode decides what is behind it
/// (the socket in the emulator, a buffer for an Azure invocation envelope).
public protocol FunctionBodyWriter {
    mutating func write(_ buffer: ByteBuffer) async throws
}

/// What an HTTP-triggered function answers.
public struct FunctionResponse: Sendable {
    public enum Body: Sendable {
        case bytes(ByteBuffer)
        /// Written piece by piece, so a large export never sits in memory whole.
        case stream(@Sendable (inout any FunctionBodyWriter) async throws -> Void)
    }

    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: Body

    public init(status: HTTPResponse.Status = .ok, headers: HTTPFields = [:], body: Body = .bytes(ByteBuffer())) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static let jsonContentType = "application/json; charset=utf-8"

    /// A JSON response from bytes already encoded.
    public static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> FunctionResponse {
        json(ByteBuffer(bytes: bytes), status: status)
    }

    /// A JSON response from a buffer already encoded (no copy).
    public static func json(_ buffer: ByteBuffer, status: HTTPResponse.Status = .ok) -> FunctionResponse {
        var headers = HTTPFields()
        headers[.contentType] = jsonContentType
        return FunctionResponse(status: status, headers: headers, body: .bytes(buffer))
    }

    /// A JSON response built with a `JSONWriter`.
    public static func json(status: HTTPResponse.Status = .ok, _ build: (inout JSONWriter) -> Void) -> FunctionResponse {
        var writer = JSONWriter()
        build(&writer)
        return json(writer.bytes, status: status)
    }

    public static func noContent() -> FunctionResponse {
        FunctionResponse(status: .noContent)
    }

    /// The error's contract body and headers.
    public static func error(_ error: FunctionError, requestID: String) -> FunctionResponse {
        var response = json(error.body(requestID: requestID), status: error.status)
        for field in error.headers {
            response.headers.append(field)
        }
        return response
    }
}

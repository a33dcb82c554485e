import HTTPTypes
import Logging
import NIOCore

/// What an HTTP-triggered function receives, whichever way the request arrived
/// (the emulator's HTTP server, an Azure invocation payload, or a forwarded request).
public struct FunctionRequest: Sendable {
    public var functionName: String
    public var method: HTTPRequest.Method
    /// The request path without the query string, e.g. `/api/leads/42`.
    public var path: String
    /// Values of the route's `{name}` segments.
    public var pathParameters: [String: String]
    public var query: QueryItems
    public var headers: HTTPFields
    public var body: ByteBuffer
    public var requestID: String
    public var logger: Logger

    public init(
        functionName: String, method: HTTPRequest.Method, path: String, pathParameters: [String: String] = [:],
        query: QueryItems = QueryItems(), headers: HTTPFields = [:], body: ByteBuffer = ByteBuffer(),
        requestID: String, logger: Logger
    ) {
        self.functionName = functionName
        self.method = method
        self.path = path
        self.pathParameters = pathParameters
        self.query = query
        self.headers = headers
        self.body = body
        self.requestID = requestID
        self.logger = logger
    }
}

extension FunctionRequest {
    /// What a hosting mode extracts from the wire before the request is bound to a function.
    struct Parts: Sendable {
        var method: HTTPRequest.Method
        var path: String
        var pathParameters: [String: String]
        var query: QueryItems
        var headers: HTTPFields
        var body: ByteBuffer
        var requestID: String
    }

    init(_ parts: Parts, functionName: String, logger: Logger) {
        self.init(
            functionName: functionName, method: parts.method, path: parts.path, pathParameters: parts.pathParameters,
            query: parts.query, headers: parts.headers, body: parts.body, requestID: parts.requestID, logger: logger)
    }
}

extension FunctionRequest {
    /// `query.single(name)`: a parameter the function reads, refused when repeated.
    public func singleQuery(_ name: String) throws(FunctionError) -> String? { try query.single(name) }
}

/// Decoded query parameters in arrival order; a repeated name keeps every value.
public struct QueryItems: Sendable, Equatable {
    public var items: [(name: String, value: String)]

    public init(_ items: [(name: String, value: String)] = []) {
        self.items = items
    }

    /// Parses `a=1&b=x%20y` (percent-decoding, `+` as space). Malformed escapes are kept literally.
    public init(parsing query: Substring) {
        var items: [(name: String, value: String)] = []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            if let equals = pair.firstIndex(of: "=") {
                items.append((Self.decode(pair[..<equals]), Self.decode(pair[pair.index(after: equals)...])))
            } else {
                items.append((Self.decode(pair), ""))
            }
        }
        self.items = items
    }

    /// The first value of `name`, if present (names match byte for byte).
    public subscript(name: String) -> String? {
        for item in items where item.name.utf8.elementsEqual(name.utf8) { return item.value }
        return nil
    }

    public func values(_ name: String) -> [String] {
        items.filter { $0.name.utf8.elementsEqual(name.utf8) }.map(\.value)
    }

    /// The value of a parameter that may appear at most once: nil when absent, a 400
    /// `VALIDATION_FAILED` naming it when repeated (a proxy reading another copy would disagree).
    public func single(_ name: String) throws(FunctionError) -> String? {
        var found: String?
        for item in items where item.name.utf8.elementsEqual(name.utf8) {
            guard found == nil else { throw .validationFailed("parameter '\(name)' must be given at most once") }
            found = item.value
        }
        if let found, found.utf8.contains(0) { throw .validationFailed("parameter '\(name)' must not contain a NUL character") }
        return found
    }

    public static func == (lhs: QueryItems, rhs: QueryItems) -> Bool {
        lhs.items.elementsEqual(rhs.items) { $0.name == $1.name && $0.value == $1.value }
    }

    static func decode(_ text: Substring, plusAsSpace: Bool = true) -> String {
        let utf8 = text.utf8
        guard utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusAsSpace && $0 == UInt8(ascii: "+")) }) else {
            return String(text)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            if plusAsSpace, byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"),
                let first = utf8.index(index, offsetBy: 1, limitedBy: utf8.endIndex), first != utf8.endIndex,
                let second = utf8.index(first, offsetBy: 1, limitedBy: utf8.endIndex), second != utf8.endIndex,
                let high = hexValue(utf8[first]), let low = hexValue(utf8[second])
            {
                bytes.append(high << 4 | low)
                index = second
            } else {
                bytes.append(byte)
            }
            index = utf8.index(after: index)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

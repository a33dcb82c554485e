import Foundation
import HTTPTypes
import NIOCore

/// The Azure Functions custom-handler protocol: invocation payloads in, envelopes out.
///
/// Request: `POST /{FunctionName}` with `{"Data":{binding: value},"Metadata":{...}}`; an HTTP
/// trigger's value is `{"Url","Method","Query":{name:string},"Headers":{name:[string]},"Params",
/// "Body"}` (Body base64 for `application/octet-stream` and `multipart/*`). Response:
/// `{"Outputs":{...},"Logs":[],"ReturnValue":null}` with `application/json`.
enum AzureInvocation {
    struct PayloadError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    static func parsePayload(_ body: ByteBuffer) throws(PayloadError) -> [String: JSONValue] {
        guard let document = try? JSONReader.parse(body.readableBytesView),
            case .object(let root) = document
        else {
            throw PayloadError("the invocation payload is not a JSON object")
        }
        guard case .object(let data)? = root["Data"] else {
            throw PayloadError("the invocation payload has no \"Data\" object")
        }
        return data
    }

    /// Rebuilds the HTTP request the Azure host received from `Data.{binding}`.
    static func httpRequest(
        _ value: JSONValue?, function: FunctionCatalog.Function, trigger: HTTPTriggerSpec, invocationID: String?
    ) throws(PayloadError) -> (request: FunctionRequest.Parts, bodyTooLarge: Bool) {
        guard case .object(let request)? = value else { throw PayloadError("Data.\(trigger.bindingName) is missing") }
        guard let methodText = request["Method"]?.stringValue, let method = HTTPRequest.Method(methodText.uppercased())
        else { throw PayloadError("Data.\(trigger.bindingName).Method is missing") }
        guard let url = request["Url"]?.stringValue, !url.isEmpty else { throw PayloadError("Data.\(trigger.bindingName).Url is missing") }
        let (path, rawQuery) = splitURL(url)

        var headers = HTTPFields()
        if case .object(let fields)? = request["Headers"] {
            for name in fields.keys.sorted() {
                guard let fieldName = HTTPField.Name(name) else { continue }
                switch fields[name] {
                case .array(let values)?:
                    for value in values { if let text = value.stringValue { headers.append(HTTPField(name: fieldName, value: text)) } }
                case .string(let text)?:
                    headers.append(HTTPField(name: fieldName, value: text))
                default: break
                }
            }
        }

        var query = rawQuery.map { QueryItems(parsing: $0) } ?? QueryItems()
        if query.items.isEmpty, case .object(let object)? = request["Query"] {
            query = QueryItems(object.keys.sorted().compactMap { key in object[key]?.stringValue.map { (key, $0) } })
        }

        var parameters: [String: String] = [:]
        if case .object(let params)? = request["Params"] {
            for (key, value) in params { if let text = value.stringValue { parameters[key] = text } }
        }
        if parameters.isEmpty {
            let segments = Substring(path).split(separator: "/", omittingEmptySubsequences: true)[...]
            parameters = trigger.route.match(segments) ?? [:]
        }

        var body = ByteBuffer()
        switch request["Body"] {
        case .string(let text)?:
            let contentType = (headers[.contentType] ?? "").lowercased()
            if contentType.hasPrefix("application/octet-stream") || contentType.hasPrefix("multipart/") {
                guard let decoded = Data(base64Encoded: text) else {
                    throw PayloadError("Data.\(trigger.bindingName).Body is not valid base64")
                }
                body = ByteBuffer(bytes: decoded)
            } else {
                body = ByteBuffer(string: text)
            }
        case .object?, .array?:
            var writer = JSONWriter()
            request["Body"]?.write(to: &writer)
            body = ByteBuffer(bytes: writer.bytes)
        default:
            break
        }
        let requestID = headers[.requestID].flatMap { RequestIDs.isSane($0) ? $0 : nil }
            ?? invocationID.flatMap { RequestIDs.isSane($0) ? $0 : nil } ?? RequestIDs.generate()
        return (
            FunctionRequest.Parts(
                method: method, path: path, pathParameters: parameters, query: query, headers: headers, body: body,
                requestID: requestID),
            body.readableBytes > HTTPFront.maxBodySize
        )
    }

    /// `TimerInfo` from `Data.{binding}`: `{"Schedule":{...},"ScheduleStatus":null|{Last,Next,LastUpdated},"IsPastDue":bool}`.
    static func timerInfo(_ value: JSONValue?) -> TimerInfo {
        guard case .object(let timer)? = value else { return TimerInfo(isPastDue: false) }
        var status: ScheduleStatus?
        if case .object(let object)? = timer["ScheduleStatus"],
            let last = object["Last"]?.stringValue.flatMap(ISO8601.parse),
            let next = object["Next"]?.stringValue.flatMap(ISO8601.parse)
        {
            status = ScheduleStatus(
                last: last, next: next, lastUpdated: object["LastUpdated"]?.stringValue.flatMap(ISO8601.parse) ?? last)
        }
        return TimerInfo(isPastDue: timer["IsPastDue"]?.boolValue ?? false, scheduleStatus: status)
    }

    /// The envelope of an HTTP invocation; `outputName` `$return` puts the response in `ReturnValue`.
    static func httpEnvelope(status: HTTPResponse.Status, headers: HTTPFields, body: ByteBuffer, outputName: String) -> [UInt8] {
        var writer = JSONWriter(capacity: 256 + body.readableBytes)
        func writeResponse(_ writer: inout JSONWriter) {
            writer.beginObject()
            writer.field("statusCode", Int(status.code))
            writer.key("headers")
            writer.beginObject()
            var merged: [(String, String)] = []
            for field in headers {
                if let index = merged.firstIndex(where: { $0.0.lowercased() == field.name.canonicalName }) {
                    merged[index].1 += ", " + field.value
                } else {
                    merged.append((field.name.rawName, field.value))
                }
            }
            for (name, value) in merged { writer.field(name, value) }
            writer.endObject()
            let bytes = Array(body.readableBytesView)
            if let text = String(validating: bytes, as: UTF8.self) {
                writer.field("body", text)
            } else {
                writer.field("body", Data(bytes).base64EncodedString())
            }
            writer.endObject()
        }
        writer.beginObject()
        writer.key("Outputs")
        writer.beginObject()
        if outputName != "$return" {
            writer.key(outputName)
            writeResponse(&writer)
        }
        writer.endObject()
        writer.key("Logs")
        writer.beginArray()
        writer.endArray()
        writer.key("ReturnValue")
        if outputName == "$return" { writeResponse(&writer) } else { writer.null() }
        writer.endObject()
        return writer.bytes
    }

    static let emptyEnvelope = Array(#"{"Outputs":{},"Logs":[],"ReturnValue":null}"#.utf8)

    static func splitURL(_ url: String) -> (path: String, query: Substring?) {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") {
            rest = rest[scheme.upperBound...]
            rest = rest.firstIndex(of: "/").map { rest[$0...] } ?? "/"
        }
        if let question = rest.firstIndex(of: "?") {
            return (String(rest[..<question]), rest[rest.index(after: question)...])
        }
        return (String(rest), nil)
    }
}

/// ISO 8601 / RFC 3339 date-times as the Azure host writes them (any number of fraction digits, `Z` or `±HH:MM`).
enum ISO8601 {
    static func parse(_ text: String) -> Date? {
        let utf8 = Array(text.utf8)
        func number(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= utf8.count else { return nil }
            var value = 0
            for byte in utf8[start..<(start + count)] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard utf8.count >= 20, let year = number(0, 4), utf8[4] == 0x2D, let month = number(5, 2), utf8[7] == 0x2D,
            let day = number(8, 2), utf8[10] == 0x54 || utf8[10] == 0x74 || utf8[10] == 0x20, let hour = number(11, 2),
            utf8[13] == 0x3A, let minute = number(14, 2), utf8[16] == 0x3A, let second = number(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < utf8.count, utf8[index] == 0x2E {
            index += 1
            var scale = 0.1
            while index < utf8.count, utf8[index] >= 0x30, utf8[index] <= 0x39 {
                fraction += Double(utf8[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
        }
        guard index < utf8.count else { return nil }
        var offset = 0
        switch utf8[index] {
        case 0x5A, 0x7A:
            guard index + 1 == utf8.count else { return nil }
        case 0x2B, 0x2D:
            guard index + 6 == utf8.count, let hours = number(index + 1, 2), utf8[index + 3] == 0x3A,
                let minutes = number(index + 4, 2)
            else { return nil }
            offset = (hours * 3600 + minutes * 60) * (utf8[index] == 0x2D ? -1 : 1)
        default:
            return nil
        }
        let seconds = Civil(year: year, month: month, day: day, hour: hour, minute: minute, second: second).seconds
            - Int64(offset)
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }
}

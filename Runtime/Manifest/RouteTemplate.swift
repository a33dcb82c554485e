/// An Azure-style route template such as `api/leads/{id}` or `files/{*path}`.
///
/// Literal segments match ASCII case-insensitively (as ASP.NET routing does);
/// `{name}` captures one segment, `{name:int|long|guid|alpha|bool}` one constrained
/// segment, and `{*name}` (last only) the rest of the path.
public struct RouteTemplate: Sendable, Hashable, CustomStringConvertible {
    public enum Constraint: String, Sendable, Hashable, CaseIterable {
        case int, long, guid, alpha, bool
    }

    public enum Segment: Sendable, Hashable {
        case literal(String)
        case parameter(name: String, constraint: Constraint?)
        case catchAll(name: String)
    }

    public let template: String
    public let segments: [Segment]
    /// The template with parameter names erased (constraints kept, since routing tries a
    /// constrained segment first), used to detect two functions claiming one route.
    let shape: String

    public var description: String { template }

    public init(parsing template: String) throws(RouteTemplateError) {
        self.template = template
        var segments: [Segment] = []
        let parts = template.split(separator: "/", omittingEmptySubsequences: false)
        var trimmed = parts[...]
        if trimmed.first == "" { trimmed = trimmed.dropFirst() }
        if trimmed.last == "", trimmed.count > 0 { trimmed = trimmed.dropLast() }
        var names: Set<String> = []
        for (position, part) in trimmed.enumerated() {
            guard !part.isEmpty else { throw RouteTemplateError("empty segment") }
            let segment = try Self.parseSegment(part)
            switch segment {
            case .literal: break
            case .parameter(let name, _), .catchAll(let name):
                guard names.insert(name.lowercased()).inserted else {
                    throw RouteTemplateError("parameter '\(name)' appears twice")
                }
                if case .catchAll = segment, position != trimmed.count - 1 {
                    throw RouteTemplateError("catch-all '{*\(name)}' must be the last segment")
                }
            }
            segments.append(segment)
        }
        self.segments = segments
        self.shape = segments.map { segment -> String in
            switch segment {
            case .literal(let text): text.lowercased()
            case .parameter(_, let constraint): "{\(constraint?.rawValue ?? "")}"
            case .catchAll: "{*}"
            }
        }.joined(separator: "/")
    }

    private static func parseSegment(_ part: Substring) throws(RouteTemplateError) -> Segment {
        guard part.contains("{") || part.contains("}") else {
            guard part.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "?" && $0 != "#" && $0 != "%" }) else {
                throw RouteTemplateError("segment '\(part)' has characters a route cannot hold")
            }
            return .literal(String(part))
        }
        guard part.first == "{", part.last == "}", part.count > 2 else {
            throw RouteTemplateError("segment '\(part)' must be a literal or a whole '{name}'")
        }
        var inner = part.dropFirst().dropLast()
        guard !inner.contains("{"), !inner.contains("}") else {
            throw RouteTemplateError("segment '\(part)' has unbalanced braces")
        }
        var catchAll = false
        if inner.first == "*" {
            catchAll = true
            inner = inner.dropFirst()
        }
        var constraint: Constraint?
        if let colon = inner.firstIndex(of: ":") {
            let text = inner[inner.index(after: colon)...]
            guard let parsed = Constraint(rawValue: text.lowercased()) else {
                throw RouteTemplateError(
                    "constraint '\(text)' is not supported (use one of \(Constraint.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            constraint = parsed
            inner = inner[..<colon]
        }
        guard let first = inner.first, first.isASCII, first.isLetter,
            inner.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
        else {
            throw RouteTemplateError("parameter name '\(inner)' must be letters, digits or '_' and start with a letter")
        }
        if catchAll {
            guard constraint == nil else { throw RouteTemplateError("a catch-all parameter takes no constraint") }
            return .catchAll(name: String(inner))
        }
        return .parameter(name: String(inner), constraint: constraint)
    }

    /// Matches already-split path segments; returns the captured parameters (percent-decoded).
    func match(_ pathSegments: ArraySlice<Substring>) -> [String: String]? {
        var parameters: [String: String] = [:]
        var index = pathSegments.startIndex
        for segment in segments {
            switch segment {
            case .literal(let literal):
                guard index < pathSegments.endIndex, Self.equalsIgnoringASCIICase(pathSegments[index], literal) else {
                    return nil
                }
            case .parameter(let name, let constraint):
                guard index < pathSegments.endIndex else { return nil }
                let value = PathDecoding.decode(pathSegments[index])
                if let constraint, !Self.satisfies(value, constraint) { return nil }
                parameters[name] = value
            case .catchAll(let name):
                parameters[name] = pathSegments[index...].map { PathDecoding.decode($0) }.joined(separator: "/")
                return parameters
            }
            index += 1
        }
        return index == pathSegments.endIndex ? parameters : nil
    }

    /// Ordering used to try routes: literal before constrained parameter before parameter before catch-all.
    var precedence: [Int] {
        segments.map { segment in
            switch segment {
            case .literal: 0
            case .parameter(_, let constraint): constraint == nil ? 2 : 1
            case .catchAll: 3
            }
        }
    }

    /// On contiguous bytes, lengths first: every request tries the routes in turn, and comparing
    /// through `String.UTF8View` iterators showed in the listing's profile.
    static func equalsIgnoringASCIICase(_ lhs: Substring, _ rhs: String) -> Bool {
        var lhs = lhs
        var rhs = rhs
        return lhs.withUTF8 { left in
            rhs.withUTF8 { right in
                guard left.count == right.count else { return false }
                for index in 0..<left.count {
                    let a = left[index]
                    let b = right[index]
                    guard a == b || (a | 0x20 == b | 0x20 && (a | 0x20) >= UInt8(ascii: "a") && (a | 0x20) <= UInt8(ascii: "z")) else {
                        return false
                    }
                }
                return true
            }
        }
    }

    private static func satisfies(_ value: String, _ constraint: Constraint) -> Bool {
        switch constraint {
        case .int: Int32(value) != nil
        case .long: Int64(value) != nil
        case .bool: value.lowercased() == "true" || value.lowercased() == "false"
        case .alpha: !value.isEmpty && value.allSatisfy { $0.isASCII && $0.isLetter }
        case .guid: UUIDText.isValid(value)
        }
    }
}

public struct RouteTemplateError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

enum PathDecoding {
    /// Percent-decodes one path segment; `+` stays literal in paths.
    static func decode(_ segment: Substring) -> String {
        QueryItems.decode(segment, plusAsSpace: false)
    }
}

enum UUIDText {
    /// `8-4-4-4-12` hexadecimal digits.
    static func isValid(_ text: String) -> Bool {
        let utf8 = Array(text.utf8)
        guard utf8.count == 36 else { return false }
        for (offset, byte) in utf8.enumerated() {
            if offset == 8 || offset == 13 || offset == 18 || offset == 23 {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                let isHex = (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x66)
                guard isHex else { return false }
            }
        }
        return true
    }
}

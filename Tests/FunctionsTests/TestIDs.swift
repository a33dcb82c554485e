@testable import Functions

// Tests only: id literals. Production code has no implicit conversion from `String` (docs/security.md).
extension Identifier: ExpressibleByStringLiteral, ExpressibleByUnicodeScalarLiteral,
    ExpressibleByExtendedGraphemeClusterLiteral
{
    public init(stringLiteral value: String) { self.init(trusted: value) }
}

extension ChainID: ExpressibleByStringLiteral, ExpressibleByUnicodeScalarLiteral,
    ExpressibleByExtendedGraphemeClusterLiteral
{
    public init(stringLiteral value: String) { self.init(stored: value) }
}

extension String {
    var tenant: TenantID { TenantID(trusted: self) }
    var user: UserID { UserID(trusted: self) }
}

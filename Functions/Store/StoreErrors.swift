import PostgresNIO
import SQLiteNIO

/// What a database error means for the request (docs/api.md, "What the database refuses"): the one
/// place a driver's error is read. A value the database refuses is the client's error (400), a
/// conflict between transactions is tried again inside the deadline, only a dependency or the
/// deadline failing is a 503, and anything else is a bug (500, without internals).
enum StoreFailureKind: Sendable, Equatable {
    /// Connection, pool, server unavailable, or the deadline: 503.
    case unavailable
    /// The value is one the database refuses (SQLSTATE classes 22 and 23; `SQLITE_CONSTRAINT`,
    /// `SQLITE_TOOBIG`, `SQLITE_MISMATCH`): 400 naming the field when the database names one of
    /// a lead's fields.
    case refused(field: String?)
    /// A serialization failure or deadlock (40001, 40P01): nothing was changed; tried again while
    /// the deadline allows, then 503.
    case retryable
    /// Anything else (a syntax error, a type mismatch in our own SQL): 500.
    case failed
}

extension StoreUnavailable {
    /// `error` read by class. A `StoreUnavailable` is kept as it is.
    init(classifying error: any Error) {
        if let known = error as? StoreUnavailable {
            self = known
            return
        }
        if let error = error as? PostgresTransactionError {
            // The closure's error first: BEGIN and COMMIT failing are the transaction's, not the value's.
            if let inner = error.closureError ?? error.beginError ?? error.commitError {
                self.init(classifying: inner)
                return
            }
        }
        if let error = error as? PSQLError {
            self.init(postgres: error)
            return
        }
        if let error = error as? SQLiteError {
            self.init(sqlite: error)
            return
        }
        if error is TransactionDeadline.Expired {
            self.init(description: "timed out")
            return
        }
        self.init(description: String(describing: type(of: error)))
    }

    private init(postgres error: PSQLError) {
        guard let info = error.serverInfo, let state = info[.sqlState] else {
            // Not an answer from the server: the connection, the pool, a client-side cancel.
            self.init(description: "postgres \(error.code)")
            return
        }
        var kind = Self.kind(sqlState: state)
        if case .refused = kind {
            kind = .refused(field: LeadColumns.field(table: info[.tableName], column: info[.columnName], constraint: info[.constraintName]))
        }
        self.init(description: "postgres SQLSTATE \(state)", kind: kind)
    }

    /// SQLSTATE by class (PostgreSQL, Appendix A), compared on bytes.
    static func kind(sqlState: String) -> StoreFailureKind {
        let state = Array(sqlState.utf8)
        guard state.count == 5, state.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) }) else { return .failed }
        func exactly(_ code: String) -> Bool { state.elementsEqual(code.utf8) }
        switch String(decoding: state.prefix(2), as: UTF8.self) {
        case "22", "23": return .refused(field: nil)
        case "40":
            if exactly("40001") || exactly("40P01") { return .retryable }
            if exactly("40002") { return .refused(field: nil) }  // a deferred constraint, checked at COMMIT
            return .unavailable  // 40000, 40003: the transaction ended with the connection's trouble
        // Connection, insufficient resources, operator intervention (57014: a statement timeout or the
        // module's own deadline), system errors.
        case "08", "53", "57", "58": return .unavailable
        case "55": return exactly("55P03") ? .unavailable : .failed  // lock_not_available: lock_timeout, the deadline
        case "25": return exactly("25006") ? .unavailable : .failed  // read-only: a replica during a failover
        // What a statement meets against a schema (or grants) not there yet (`refusesPreparation`): the
        // database is not ready for this binary, as with a schema behind it.
        case "42", "3F", "26", "0A": return .unavailable
        default: return .failed
        }
    }

    private init(sqlite error: SQLiteError) {
        switch error.reason {
        case .constraint, .constraintCheckFailed, .constraintNotNullFailed, .constraintPrimaryKeyFailed, .constraintUniqueFailed,
            .constraintForeignKeyFailed, .constraintTriggerFailed, .constraintStrictDataTypeFailed, .constraintUserFunctionFailed,
            .constraintCommitHookFailed, .constraintVirtualTableFailed, .constraintUniqueRowIDFailed,
            .constraintUpdateTriggerDeletedRow, .tooBig, .mismatch:
            self.init(description: "sqlite \(error.reason)", kind: .refused(field: LeadColumns.field(sqliteMessage: error.message)))
        case .error, .misuse, .range, .intern, .format, .schema, .errorMissingCollatingSequence:
            self.init(description: "sqlite \(error.reason)", kind: .failed)
        default:
            // Busy, locked, I/O, full, read-only, corrupt, cannot open: the file or its lock failed.
            self.init(description: "sqlite \(error.reason)")
        }
    }
}

/// The lead fields a database error may name; anything else it names stays unnamed (no internals).
enum LeadColumns {
    static let fields = ["name", "email", "phone", "company", "status", "notes"]

    static func known(_ text: some Collection<UInt8>) -> String? {
        fields.first { $0.utf8.elementsEqual(text) }
    }

    /// PostgreSQL: the column of a NOT NULL violation, or the constraint PostgreSQL names
    /// `leads_<column>_check` for a column's CHECK (migration 1).
    static func field(table: String?, column: String?, constraint: String?) -> String? {
        if let column, let field = known(column.utf8) { return field }
        guard let constraint else { return nil }
        let bytes = Array(constraint.utf8)
        let prefix = Array("leads_".utf8)
        let suffix = Array("_check".utf8)
        guard bytes.count > prefix.count + suffix.count, bytes.starts(with: prefix), bytes.suffix(suffix.count).elementsEqual(suffix),
            table.map({ $0.utf8.elementsEqual("leads".utf8) }) ?? true
        else { return nil }
        return known(bytes[prefix.count..<(bytes.count - suffix.count)])
    }

    /// SQLite names the column (`NOT NULL constraint failed: leads.name`) or quotes the CHECK's
    /// expression (`CHECK constraint failed: length(name) BETWEEN 1 AND 200`): the first word of the
    /// message after its colon that is a lead field.
    static func field(sqliteMessage message: String) -> String? {
        let bytes = Array(message.utf8)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        func word(_ byte: UInt8) -> Bool {
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == UInt8(ascii: "_")
        }
        for token in bytes[(colon + 1)...].split(whereSeparator: { !word($0) }) {
            if let field = known(token) { return field }
        }
        return nil
    }
}

extension StoreUnavailable {
    /// PostgreSQL answered the COMMIT with an error: the transaction rolled back, nothing was committed
    /// (a connection lost during COMMIT is another matter: the outcome is unknown).
    static func isRefusedCommit(_ error: any Error) -> Bool {
        ((error as? PostgresTransactionError)?.commitError as? PSQLError)?.serverInfo != nil
    }
}

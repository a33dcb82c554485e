import Logging
import PostgresNIO

/// Prepared statements, run so that a refused preparation cannot poison a connection.
///
/// postgres-nio prepares a statement once per connection and remembers the outcome for the
/// connection's life — a failure too. A statement first run while its function, table or grant did
/// not exist yet (an instance serving before `fnhost migrate`, or during the background migration
/// after an outage) would then fail on that connection forever, though the schema is fine. So an
/// error of the kinds a preparation can meet closes the connection; the pool opens a fresh one.
extension PostgresConnection {
    func rows<Statement: PostgresPreparedStatement>(
        _ statement: Statement, _ mode: StatementMode, logger: Logger
    ) async throws -> [Statement.Row] {
        do {
            var rows: [Statement.Row] = []
            switch mode {
            case .prepared:
                for try await row in try await execute(statement, logger: logger) { rows.append(row) }
            case .unnamed:
                let query = PostgresQuery(unsafeSQL: Statement.sql, binds: try statement.makeBindings())
                for try await row in try await self.query(query, logger: logger) { rows.append(try statement.decodeRow(row)) }
            }
            return rows
        } catch let error as PSQLError where error.losesItsServer || (mode == .prepared && error.refusesPreparation) {
            logger.warning(
                "a statement failed in a way its connection cannot recover from; the connection is replaced",
                metadata: ["statement": .string(Statement.name), "sqlstate": .string(error.serverInfo?[.sqlState] ?? "")])
            try? await close()
            throw error
        }
    }

    /// Closes this connection when `error` says its server can no longer serve it (`losesItsServer`), so the pool
    /// never hands it out again; then rethrows.
    func discarding<T>(_ body: () async throws -> T, logger: Logger) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError where error.losesItsServer {
            logger.warning(
                "the database can no longer serve this connection (read-only after a failover, or shut down); it is replaced",
                metadata: ["sqlstate": .string(error.serverInfo?[.sqlState] ?? "")])
            try? await close()
            throw error
        }
    }
}

extension PostgresClient {
    func rows<Statement: PostgresPreparedStatement>(
        _ statement: Statement, _ mode: StatementMode, logger: Logger
    ) async throws -> [Statement.Row] where Statement.Row: Sendable {
        try await withConnection { connection in try await connection.rows(statement, mode, logger: logger) }
    }
}

/// How the module's statements reach PostgreSQL, chosen by `DATABASE_POOLER` (`DatabasePooler`).
enum StatementMode: Sendable, Equatable {
    /// Prepared by name once per connection, then only bound and run: parsed and planned once (a direct
    /// connection, or a pooler that keeps a client on one server connection).
    case prepared
    /// Unnamed: parse, bind and run written together, one round trip and one implicit transaction, the same SQL
    /// and values. Behind a transaction pooler each transaction may run on another server connection, where a
    /// name prepared on the previous one does not exist (or another client's does).
    case unnamed
}

/// What stands between the module and PostgreSQL (`DATABASE_POOLER`): `none` (a direct connection), `session`
/// or `transaction` (PgBouncer's pool modes; Azure's built-in PgBouncer is `transaction`). Behind any pooler
/// the connection sends no startup parameter a pooler would refuse (only `application_name`), so the 5 s
/// `statement_timeout` direct connections send is not set at connect: a transaction sets its own (the remaining
/// deadline), the create functions check theirs, and the operator sets the role's default (docs/azure.md).
/// Behind a transaction pooler statements are unnamed (`StatementMode`).
enum DatabasePooler: String, Sendable, CaseIterable {
    case none, session, transaction

    init(setting: String?) throws(StoreUnavailable) {
        guard let text = setting?.lowercased(), !text.isEmpty else {
            self = .none
            return
        }
        guard let pooler = DatabasePooler.allCases.first(where: { $0.rawValue.utf8.elementsEqual(text.utf8) }) else {
            throw StoreUnavailable(description: "DATABASE_POOLER must be none, session or transaction")
        }
        self = pooler
    }

    var statements: StatementMode { self == .transaction ? .unnamed : .prepared }
}

extension PSQLError {
    /// The server behind this connection can no longer serve it: 25006 (read-only: the server became a replica in a
    /// failover), 57P01/57P02/57P03 (shut down, crashed, not accepting connections yet) and class 08 (the connection
    /// itself failed). Such a connection is discarded, never reused: PostgreSQL keeps a demoted server's sessions
    /// open, so without this every write on them would fail until their idle close. Compared on bytes.
    var losesItsServer: Bool {
        guard let state = serverInfo?[.sqlState].map({ Array($0.utf8) }), state.count == 5 else { return false }
        return state.prefix(2).elementsEqual("08".utf8) || state.elementsEqual("25006".utf8) || state.elementsEqual("57P01".utf8)
            || state.elementsEqual("57P02".utf8) || state.elementsEqual("57P03".utf8)
    }

    /// SQLSTATE classes 42 (a missing function, table, column or privilege; syntax), 3F (schema),
    /// 26 (statement name) and 0A000 (not supported): what a statement prepared against a schema that
    /// is not there yet meets. Compared on bytes.
    var refusesPreparation: Bool {
        guard let state = serverInfo?[.sqlState].map({ Array($0.utf8) }), state.count == 5 else { return false }
        let family = state.prefix(2)
        return family.elementsEqual("42".utf8) || family.elementsEqual("3F".utf8) || family.elementsEqual("26".utf8)
            || state.elementsEqual("0A000".utf8)
    }
}

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
    func rows<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger) async throws -> [Statement.Row] {
        do {
            var rows: [Statement.Row] = []
            for try await row in try await execute(statement, logger: logger) { rows.append(row) }
            return rows
        } catch let error as PSQLError where error.refusesPreparation || error.losesItsServer {
            logger.warning(
                "a prepared statement failed in a way its connection cannot recover from; the connection is replaced",
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
    func rows<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger) async throws -> [Statement.Row]
    where Statement.Row: Sendable {
        try await withConnection { connection in try await connection.rows(statement, logger: logger) }
    }
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

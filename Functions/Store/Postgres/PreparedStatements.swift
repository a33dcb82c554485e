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
        } catch let error as PSQLError where error.refusesPreparation {
            logger.warning(
                "a prepared statement was refused; its connection is replaced",
                metadata: ["statement": .string(Statement.name), "sqlstate": .string(error.serverInfo?[.sqlState] ?? "")])
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

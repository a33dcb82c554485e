/// Versioned schema changes, one list per backend, embedded in the binary. Applied in order
/// inside one transaction each and recorded in `schema_migrations`; applying twice is a no-op.
enum Migrations {
    struct Migration: Sendable {
        let version: Int
        let name: String
        let statements: [String]
    }

    /// The `module_permissions` seed: SPEC §6.
    static let permissionRows: [(String, Bool, Bool)] = [
        ("LEADS_READ", true, false), ("LEADS_WRITE", false, false), ("LEADS_DELETE", false, true),
        ("EXPORTS_EXECUTE", false, true), ("AUDIT_READ", true, false), ("EMAIL_SEND", false, false),
    ]

    static let postgres: [Migration] = [
        Migration(
            version: 1, name: "leads and module permissions",
            statements: [
                """
                CREATE TABLE leads (
                    tenant_id  text        NOT NULL,
                    id         uuid        NOT NULL,
                    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
                    email      text        NOT NULL,
                    phone      text,
                    company    text,
                    status     text        NOT NULL DEFAULT 'new' CHECK (status IN ('new','contacted','qualified','won','lost')),
                    notes      text        CHECK (notes IS NULL OR char_length(notes) <= 10000),
                    created_by text        NOT NULL,
                    created_at timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL,
                    PRIMARY KEY (tenant_id, id)
                )
                """,
                "CREATE INDEX leads_tenant_newest ON leads (tenant_id, created_at DESC, id DESC)",
                """
                CREATE TABLE module_permissions (
                    permission text    PRIMARY KEY,
                    read_only  boolean NOT NULL,
                    step_up    boolean NOT NULL
                )
                """,
                "INSERT INTO module_permissions (permission, read_only, step_up) VALUES "
                    + permissionRows.map { "('\($0.0)', \($0.1), \($0.2))" }.joined(separator: ", ")
                    + " ON CONFLICT (permission) DO NOTHING",
            ])
    ]

    static let sqlite: [Migration] = [
        Migration(
            version: 1, name: "leads and module permissions",
            statements: [
                """
                CREATE TABLE leads (
                    tenant_id  TEXT NOT NULL,
                    id         TEXT NOT NULL,
                    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
                    email      TEXT NOT NULL,
                    phone      TEXT,
                    company    TEXT,
                    status     TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new','contacted','qualified','won','lost')),
                    notes      TEXT CHECK (notes IS NULL OR length(notes) <= 10000),
                    created_by TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL,
                    PRIMARY KEY (tenant_id, id)
                ) WITHOUT ROWID
                """,
                "CREATE INDEX leads_tenant_newest ON leads (tenant_id, created_at DESC, id DESC)",
                """
                CREATE TABLE module_permissions (
                    permission TEXT    PRIMARY KEY,
                    read_only  INTEGER NOT NULL,
                    step_up    INTEGER NOT NULL
                )
                """,
                "INSERT OR IGNORE INTO module_permissions (permission, read_only, step_up) VALUES "
                    + permissionRows.map { "('\($0.0)', \($0.1 ? 1 : 0), \($0.2 ? 1 : 0))" }.joined(separator: ", "),
            ])
    ]
}

extension Migrations {
    /// Migration 15 (docs/data.md, docs/security.md): what must outlive the cache is recorded where only the schema
    /// owner can remove it, and the second wall holds against a holder of the runtime role's credentials.
    /// - `rbac_purges`: every RBAC purge, read by every instance (an answer asked for before the latest purge covering
    ///   it is never used).
    /// - Leads and idempotency records have no cross-tenant policy any more: no setting a session can change opens
    ///   them beyond the one tenant of `app.tenant_id` (no feature reads leads across tenants).
    /// - Revocations and purges: the cross-tenant path may only read them; the runtime role may insert but not delete
    ///   (privileges, `PostgresMigrator.runtimeGrants`); expired rows are removed by `fnhost_prune_expired()`, owned by
    ///   the schema owner (SECURITY DEFINER, fixed `search_path`), which deletes only what the database's own clock
    ///   says expired.
    /// Compatible with the previous binary: it never read leads or idempotency records across tenants; its prune of
    /// expired revocations is refused by privilege when the roles differ (logged, its poll goes on).
    static let wallsPostgres = Migration(
        version: 15, name: "durable purges; leads and idempotency records closed to every cross-tenant setting",
        statements: [
            """
            CREATE TABLE rbac_purges (
                tenant_id  text             NOT NULL,
                user_id    text,
                purged_at  double precision NOT NULL,
                expires_at bigint           NOT NULL
            )
            """,
            "CREATE INDEX rbac_purges_expiry ON rbac_purges (expires_at)",
            "ALTER TABLE rbac_purges ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE rbac_purges FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_rows ON rbac_purges USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true))",
            "CREATE POLICY cross_tenant_read ON rbac_purges FOR SELECT USING (current_setting('app.cross_tenant', true) = 'on')",
            "CREATE POLICY prune_expired ON rbac_purges FOR DELETE USING (expires_at <= extract(epoch FROM now())::bigint)",
            "DROP POLICY cross_tenant ON leads",
            "DROP POLICY cross_tenant ON lead_requests",
            "DROP POLICY cross_tenant ON session_revocations",
            "CREATE POLICY cross_tenant_read ON session_revocations FOR SELECT USING (current_setting('app.cross_tenant', true) = 'on')",
            "CREATE POLICY prune_expired ON session_revocations FOR DELETE USING (expires_at <= extract(epoch FROM now())::bigint)",
            """
            CREATE FUNCTION fnhost_prune_expired() RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
                DELETE FROM public.session_revocations WHERE expires_at <= extract(epoch FROM now())::bigint;
                DELETE FROM public.rbac_purges WHERE expires_at <= extract(epoch FROM now())::bigint;
            $fn$
            """,
            "REVOKE ALL ON FUNCTION fnhost_prune_expired() FROM PUBLIC",
        ])

    static let wallsSQLite = Migration(
        version: 15, name: "durable purges",
        statements: [
            """
            CREATE TABLE rbac_purges (
                tenant_id  TEXT    NOT NULL,
                user_id    TEXT,
                purged_at  REAL    NOT NULL,
                expires_at INTEGER NOT NULL
            )
            """,
            "CREATE INDEX rbac_purges_expiry ON rbac_purges (expires_at)",
        ])
}

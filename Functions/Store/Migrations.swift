/// Versioned schema changes, one list per backend, embedded in the binary. Applied in order
/// inside one transaction each and recorded in `schema_migrations`; applying twice is a no-op.
enum Migrations {
    struct Migration: Sendable {
        let version: Int
        let name: String
        let statements: [String]
    }

    /// Migration 1's `module_permissions` seed (docs/identity.md). **Never edit**: an applied
    /// migration never runs again, so a row added here reaches new databases only. A new
    /// permission gets a new migration inserting its row on both backends (docs/extending.md);
    /// `everyBuiltInPermissionIsSeededByTheMigrations` fails until it does.
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
            ]),
        Migration(
            version: 2, name: "hash-chained audit log",
            statements: [
                """
                CREATE TABLE audit_events (
                    chain_id           text        NOT NULL,
                    seq                bigint      NOT NULL CHECK (seq >= 1),
                    event_id           uuid        NOT NULL UNIQUE,
                    tenant_id          text,
                    occurred_at        timestamptz NOT NULL,
                    actor_sub          text,
                    actor_email        text,
                    event_type         text        NOT NULL,
                    severity           text        NOT NULL CHECK (severity IN ('info','warning','high','critical')),
                    details            jsonb       NOT NULL CHECK (jsonb_typeof(details) = 'object'),
                    prev_event_hash    text        NOT NULL CHECK (prev_event_hash ~ '^[0-9a-f]{64}$'),
                    current_event_hash text        NOT NULL CHECK (current_event_hash ~ '^[0-9a-f]{64}$'),
                    PRIMARY KEY (chain_id, seq),
                    CHECK ((chain_id = 'platform' AND tenant_id IS NULL) OR (chain_id <> 'platform' AND tenant_id = chain_id))
                )
                """,
                "CREATE INDEX audit_events_tenant_newest ON audit_events (tenant_id, occurred_at DESC, seq DESC)",
                """
                CREATE TABLE audit_chain_heads (
                    chain_id         text        PRIMARY KEY,
                    seq              bigint      NOT NULL CHECK (seq >= 0),
                    head_hash        text        NOT NULL,
                    last_occurred_at timestamptz
                )
                """,
                """
                CREATE TABLE audit_checkpoints (
                    chain_id    text        PRIMARY KEY,
                    seq         bigint      NOT NULL CHECK (seq >= 1),
                    event_hash  text        NOT NULL,
                    verified_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                """
                CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
                END $$
                """,
                "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
                "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
                """
                CREATE FUNCTION audit_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP = 'UPDATE' AND NEW.chain_id = OLD.chain_id AND NEW.seq >= OLD.seq THEN RETURN NEW; END IF;
                    RAISE EXCEPTION '%: a chain position only moves forward (% refused)', TG_TABLE_NAME, TG_OP
                        USING ERRCODE = 'insufficient_privilege';
                END $$
                """,
                "CREATE TRIGGER audit_chain_heads_forward BEFORE UPDATE OR DELETE ON audit_chain_heads FOR EACH ROW EXECUTE FUNCTION audit_forward_only()",
                "CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
                "CREATE TRIGGER audit_checkpoints_forward BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_forward_only()",
                "CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
            ]),
        Migration(
            version: 3, name: "email outbox",
            statements: [
                """
                CREATE TABLE email_outbox (
                    tenant_id       text        NOT NULL,
                    id              uuid        NOT NULL,
                    idempotency_key text        NOT NULL,
                    request_hash    text        NOT NULL,
                    template        text        NOT NULL,
                    recipient       text        NOT NULL,
                    vars            jsonb       NOT NULL CHECK (jsonb_typeof(vars) = 'object'),
                    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','sent','dead')),
                    attempts        integer     NOT NULL DEFAULT 0,
                    next_attempt_at timestamptz NOT NULL,
                    lease_owner     text,
                    lease_until     timestamptz,
                    message_id      text,
                    last_error      text,
                    created_at      timestamptz NOT NULL,
                    sent_at         timestamptz,
                    PRIMARY KEY (tenant_id, id),
                    UNIQUE (tenant_id, idempotency_key)
                )
                """,
                "CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at) WHERE status = 'pending'",
            ]),
        Migration(
            version: 4, name: "idempotent lead creates",
            statements: [
                """
                CREATE TABLE lead_requests (
                    tenant_id       text        NOT NULL,
                    idempotency_key text        NOT NULL,
                    request_hash    text        NOT NULL,
                    lead_id         uuid        NOT NULL,
                    response        text        NOT NULL,
                    created_at      timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (tenant_id, idempotency_key)
                )
                """,
            ]),
        Migration(
            version: 5, name: "timer occurrences shared by every instance",
            statements: [
                """
                CREATE TABLE timer_runs (
                    function     text        NOT NULL,
                    scheduled_at timestamptz NOT NULL,
                    claimed_by   text        NOT NULL,
                    claimed_at   timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (function, scheduled_at)
                )
                """,
                """
                CREATE TABLE timer_status (
                    function     text        PRIMARY KEY,
                    last_run     timestamptz NOT NULL,
                    next_run     timestamptz NOT NULL,
                    last_updated timestamptz NOT NULL
                )
                """,
            ]),
        Migration(
            version: 6, name: "Merkle tree and signed checkpoints per audit chain",
            statements: [
                // The verifier's positions keep their rows under a clearer name; audit_checkpoints
                // now holds the signed checkpoints that docs/audit.md names.
                "ALTER TABLE audit_checkpoints RENAME TO audit_verifier_positions",
                """
                CREATE TABLE audit_tree_nodes (
                    chain_id text     NOT NULL,
                    level    smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
                    idx      bigint   NOT NULL CHECK (idx >= 0),
                    hash     text     NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
                    PRIMARY KEY (chain_id, level, idx)
                )
                """,
                """
                CREATE TABLE audit_checkpoints (
                    chain_id  text        NOT NULL,
                    tree_size bigint      NOT NULL CHECK (tree_size >= 0),
                    root_hash text        NOT NULL CHECK (root_hash ~ '^[0-9a-f]{64}$'),
                    note      text        NOT NULL,
                    signed_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (chain_id, tree_size)
                )
                """,
                "CREATE TRIGGER audit_tree_nodes_append_only BEFORE UPDATE OR DELETE ON audit_tree_nodes FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
                "CREATE TRIGGER audit_tree_nodes_no_truncate BEFORE TRUNCATE ON audit_tree_nodes FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
                "CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
                "CREATE TRIGGER audit_signed_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
            ]),
        Migration(
            version: 7, name: "row-level security on every tenant table; tenant-scoped hot reads",
            statements: [
                // docs/data.md: only rows of the transaction's app.tenant_id, or every row on the explicit
                // cross-tenant path (app.cross_tenant = on); FORCE so the owner is held too.
                "ALTER TABLE leads ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE leads FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON leads USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON leads USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                "ALTER TABLE lead_requests ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE lead_requests FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON lead_requests USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON lead_requests USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                "ALTER TABLE email_outbox ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE email_outbox FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON email_outbox USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON email_outbox USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                "ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE audit_events FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON audit_events USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON audit_events USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                "ALTER TABLE audit_chain_heads ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE audit_chain_heads FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON audit_chain_heads USING (chain_id = current_setting('app.tenant_id', true)) WITH CHECK (chain_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON audit_chain_heads USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                "ALTER TABLE audit_verifier_positions ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE audit_verifier_positions FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON audit_verifier_positions USING (chain_id = current_setting('app.tenant_id', true)) WITH CHECK (chain_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON audit_verifier_positions USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                "ALTER TABLE audit_tree_nodes ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE audit_tree_nodes FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON audit_tree_nodes USING (chain_id = current_setting('app.tenant_id', true)) WITH CHECK (chain_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON audit_tree_nodes USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                "ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON audit_checkpoints USING (chain_id = current_setting('app.tenant_id', true)) WITH CHECK (chain_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON audit_checkpoints USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
                """
                CREATE FUNCTION fnhost_leads_json(p_tenant text, p_limit bigint, p_after_created timestamptz, p_after_id uuid)
                RETURNS TABLE (o_lead text, o_created text, o_id text) LANGUAGE plpgsql AS $fn$
                BEGIN
                    PERFORM set_config('app.tenant_id', p_tenant, true);
                    IF p_after_created IS NULL THEN
                        RETURN QUERY SELECT row_to_json(l)::text, l.created_at, l.id FROM (
                        SELECT leads.id::text AS id, leads.name, leads.email, leads.phone, leads.company, leads.status, leads.notes,
                               leads.created_by,
                               to_char(leads.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
                               to_char(leads.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at
                        FROM public.leads
                        WHERE leads.tenant_id = p_tenant ORDER BY leads.created_at DESC, leads.id DESC LIMIT p_limit) l;
                    ELSE
                        RETURN QUERY SELECT row_to_json(l)::text, l.created_at, l.id FROM (
                        SELECT leads.id::text AS id, leads.name, leads.email, leads.phone, leads.company, leads.status, leads.notes,
                               leads.created_by,
                               to_char(leads.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
                               to_char(leads.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at
                        FROM public.leads
                        WHERE leads.tenant_id = p_tenant AND (leads.created_at, leads.id) < (p_after_created, p_after_id)
                        ORDER BY leads.created_at DESC, leads.id DESC LIMIT p_limit) l;
                    END IF;
                END
                $fn$
                """,
                """
                CREATE FUNCTION fnhost_leads_page(p_tenant text, p_limit bigint, p_after_created timestamptz, p_after_id uuid)
                RETURNS TABLE (o_id text, o_name text, o_email text, o_phone text, o_company text, o_status text, o_notes text,
                               o_created_by text, o_created_at text, o_updated_at text) LANGUAGE plpgsql AS $fn$
                BEGIN
                    PERFORM set_config('app.tenant_id', p_tenant, true);
                    IF p_after_created IS NULL THEN
                        RETURN QUERY SELECT leads.id::text, leads.name, leads.email, leads.phone, leads.company, leads.status, leads.notes, leads.created_by,
                               to_char(leads.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                               to_char(leads.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                        FROM public.leads WHERE leads.tenant_id = p_tenant ORDER BY leads.created_at DESC, leads.id DESC LIMIT p_limit;
                    ELSE
                        RETURN QUERY SELECT leads.id::text, leads.name, leads.email, leads.phone, leads.company, leads.status, leads.notes, leads.created_by,
                               to_char(leads.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                               to_char(leads.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                        FROM public.leads WHERE leads.tenant_id = p_tenant AND (leads.created_at, leads.id) < (p_after_created, p_after_id)
                        ORDER BY leads.created_at DESC, leads.id DESC LIMIT p_limit;
                    END IF;
                END
                $fn$
                """,
                """
                CREATE FUNCTION fnhost_lead(p_tenant text, p_id uuid)
                RETURNS TABLE (o_id text, o_name text, o_email text, o_phone text, o_company text, o_status text, o_notes text,
                               o_created_by text, o_created_at text, o_updated_at text) LANGUAGE plpgsql AS $fn$
                BEGIN
                    PERFORM set_config('app.tenant_id', p_tenant, true);
                    RETURN QUERY SELECT leads.id::text, leads.name, leads.email, leads.phone, leads.company, leads.status, leads.notes, leads.created_by,
                               to_char(leads.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                               to_char(leads.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                    FROM public.leads WHERE leads.tenant_id = p_tenant AND leads.id = p_id;
                END
                $fn$
                """,
            ]),
        Migration(
            version: 8, name: "session revocations in the database (instances without Redis)",
            statements: [
                """
                CREATE TABLE session_revocations (
                    field      text   PRIMARY KEY,
                    tenant_id  text   NOT NULL,
                    record     text   NOT NULL,
                    expires_at bigint NOT NULL
                )
                """,
                "CREATE INDEX session_revocations_expiry ON session_revocations (expires_at)",
                "ALTER TABLE session_revocations ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE session_revocations FORCE ROW LEVEL SECURITY",
                "CREATE POLICY tenant_rows ON session_revocations USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true))",
                "CREATE POLICY cross_tenant ON session_revocations USING (current_setting('app.cross_tenant', true) = 'on') WITH CHECK (current_setting('app.cross_tenant', true) = 'on')",
            ]),
        // A listing is always best served by walking leads_tenant_newest (LIMIT n, no sort), but a plan
        // made while the statistics were stale (a bulk import, a fresh database before autovacuum's
        // first ANALYZE) found the tenant's rows through the primary key and sorted all of them — and
        // plpgsql kept that plan for the connection's life: 184 listings/s instead of ~3,600 with
        // 6,000 leads in the tenant. With sorts off inside the listing functions, the planner takes
        // the ordered index whatever the statistics say (it still sorts if no index could serve).
        Migration(
            version: 9, name: "listings walk the tenant's newest-first index whatever the statistics",
            statements: [
                "ALTER FUNCTION fnhost_leads_json(text, bigint, timestamptz, uuid) SET enable_sort = off",
                "ALTER FUNCTION fnhost_leads_page(text, bigint, timestamptz, uuid) SET enable_sort = off",
            ]),
        // The listing's whole page in one row, from JSON written once per change: every insert or
        // update stores the lead's API JSON (`api_json`, by trigger, exactly `row_to_json` of the API
        // columns as `fnhost_leads_json` built it per read), and `fnhost_leads_json_page` joins a page's
        // stored JSON into one array with whether more follow and the last lead's position for the
        // cursor. Rows written before this migration have no `api_json` and are rendered on read, so
        // nothing is rewritten here (no table-wide UPDATE on a large table). Measured on the listing:
        // PostgreSQL ~210 µs → see docs/benchmarks.md, fnhost ~3 µs less per lead (one row to decode).
        Migration(
            version: 10, name: "a listing page as one row, from JSON stored per change",
            statements: [
                "ALTER TABLE leads ADD COLUMN api_json text",
                """
                CREATE FUNCTION fnhost_lead_api_json() RETURNS trigger LANGUAGE plpgsql AS $fn$
                BEGIN
                    SELECT row_to_json(x)::text INTO NEW.api_json FROM (SELECT NEW.id::text AS id, NEW.name AS name, NEW.email AS email, NEW.phone AS phone, NEW.company AS company, NEW.status AS status, NEW.notes AS notes, NEW.created_by AS created_by, to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, to_char(NEW.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at) x;
                    RETURN NEW;
                END
                $fn$
                """,
                "CREATE TRIGGER leads_api_json BEFORE INSERT OR UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION fnhost_lead_api_json()",
                """
                CREATE FUNCTION fnhost_leads_json_page(p_tenant text, p_limit bigint, p_after_created timestamptz, p_after_id uuid)
                RETURNS TABLE (o_items text, o_more boolean, o_last_created text, o_last_id text) LANGUAGE plpgsql
                SET enable_sort = off AS $fn$
                BEGIN
                    PERFORM set_config('app.tenant_id', p_tenant, true);
                    IF p_after_created IS NULL THEN
                        RETURN QUERY WITH page AS (
                            SELECT coalesce(l.api_json, (SELECT row_to_json(x)::text FROM (SELECT l.id::text AS id, l.name AS name, l.email AS email, l.phone AS phone, l.company AS company, l.status AS status, l.notes AS notes, l.created_by AS created_by, to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, to_char(l.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at) x)) AS lead, l.created_at, l.id,
                                   row_number() OVER (ORDER BY l.created_at DESC, l.id DESC) AS n
                            FROM public.leads l
                            WHERE l.tenant_id = p_tenant ORDER BY l.created_at DESC, l.id DESC LIMIT p_limit + 1)
                        SELECT coalesce('[' || string_agg(page.lead, ',' ORDER BY page.n) FILTER (WHERE page.n <= p_limit) || ']', '[]'),
                               count(*) > p_limit,
                               max(to_char(page.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) FILTER (WHERE page.n = p_limit),
                               max(page.id::text) FILTER (WHERE page.n = p_limit)
                        FROM page;
                    ELSE
                        RETURN QUERY WITH page AS (
                            SELECT coalesce(l.api_json, (SELECT row_to_json(x)::text FROM (SELECT l.id::text AS id, l.name AS name, l.email AS email, l.phone AS phone, l.company AS company, l.status AS status, l.notes AS notes, l.created_by AS created_by, to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, to_char(l.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at) x)) AS lead, l.created_at, l.id,
                                   row_number() OVER (ORDER BY l.created_at DESC, l.id DESC) AS n
                            FROM public.leads l
                            WHERE l.tenant_id = p_tenant AND (l.created_at, l.id) < (p_after_created, p_after_id) ORDER BY l.created_at DESC, l.id DESC LIMIT p_limit + 1)
                        SELECT coalesce('[' || string_agg(page.lead, ',' ORDER BY page.n) FILTER (WHERE page.n <= p_limit) || ']', '[]'),
                               count(*) > p_limit,
                               max(to_char(page.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) FILTER (WHERE page.n = p_limit),
                               max(page.id::text) FILTER (WHERE page.n = p_limit)
                        FROM page;
                    END IF;
                END
                $fn$
                """,
            ]),
        // One statement seals and appends an audit event under the chain head's lock, so the lock
        // is held from this statement to COMMIT only (before: head upsert, seal in Swift, insert + move
        // head, COMMIT). The hash is the same as Swift's (`AuditEvent.canonicalParts`); the caller
        // checks it before the transaction commits.
        Migration(
            version: 11, name: "audit events sealed in one statement under the head's lock",
            statements: [
                """
                CREATE FUNCTION fnhost_audit_append(
                    p_chain text, p_event_id uuid, p_tenant text, p_now text, p_actor_sub text, p_actor_email text,
                    p_event_type text, p_severity text, p_details jsonb, p_before bytea, p_after bytea)
                RETURNS TABLE (o_seq bigint, o_occurred_at text, o_prev_hash text, o_hash text) LANGUAGE plpgsql AS $fn$
                DECLARE
                    v_seq bigint;
                    v_prev text;
                    v_last timestamptz;
                    v_at text;
                    v_hash text;
                BEGIN
                    -- Lock the head without writing a row version for it (one version per event: the UPDATE below).
                    SELECT h.seq, h.head_hash, h.last_occurred_at INTO v_seq, v_prev, v_last
                    FROM public.audit_chain_heads h WHERE h.chain_id = p_chain FOR UPDATE;
                    IF NOT FOUND THEN
                        -- The chain's first event: create the head (a concurrent first event waits here for
                        -- ours to commit, then locks the head ours moved), then lock it.
                        INSERT INTO public.audit_chain_heads (chain_id, seq, head_hash) VALUES (p_chain, 0, repeat('0', 64))
                        ON CONFLICT (chain_id) DO NOTHING;
                        SELECT h.seq, h.head_hash, h.last_occurred_at INTO STRICT v_seq, v_prev, v_last
                        FROM public.audit_chain_heads h WHERE h.chain_id = p_chain FOR UPDATE;
                    END IF;
                    v_seq := v_seq + 1;
                    v_at := CASE WHEN v_last IS NOT NULL AND v_last > p_now::timestamptz
                                 THEN to_char(v_last AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') ELSE p_now END;
                    v_hash := encode(sha256(convert_to(v_prev, 'UTF8') || decode('0a', 'hex') || p_before
                                            || convert_to(v_at || '","seq":' || v_seq::text, 'UTF8') || p_after), 'hex');
                    INSERT INTO public.audit_events (chain_id, seq, event_id, tenant_id, occurred_at, actor_sub, actor_email, event_type,
                                                     severity, details, prev_event_hash, current_event_hash)
                    VALUES (p_chain, v_seq, p_event_id, p_tenant, v_at::timestamptz, p_actor_sub, p_actor_email, p_event_type,
                            p_severity, p_details, v_prev, v_hash);
                    UPDATE public.audit_chain_heads SET seq = v_seq, head_hash = v_hash, last_occurred_at = v_at::timestamptz
                    WHERE chain_id = p_chain;
                    RETURN QUERY SELECT v_seq, v_at, v_prev, v_hash;
                END
                $fn$
                """,
                // A create without an idempotency key in one statement, hence one implicit transaction: the
                // tenant scope and the lock wait bound are transaction-local, the lead and its event commit
                // together, and the chain's head is locked only while the statement runs (no round trip to
                // the client between the append and COMMIT). Past `p_limit_ms` the statement fails, so
                // nothing commits after the caller's deadline.
                """
                CREATE FUNCTION fnhost_create_lead(
                    p_tenant text, p_limit_ms integer, p_id uuid, p_name text, p_email text, p_phone text, p_company text,
                    p_status text, p_notes text, p_created_by text, p_created_at timestamptz, p_updated_at timestamptz,
                    p_chain text, p_event_id uuid, p_event_tenant text, p_now text, p_actor_sub text, p_actor_email text,
                    p_event_type text, p_severity text, p_details jsonb, p_before bytea, p_after bytea)
                RETURNS TABLE (o_seq bigint, o_occurred_at text, o_prev_hash text, o_hash text) LANGUAGE plpgsql AS $fn$
                BEGIN
                    PERFORM set_config('lock_timeout', p_limit_ms::text, true), set_config('app.tenant_id', p_tenant, true),
                            set_config('app.cross_tenant', 'off', true);
                    INSERT INTO public.leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at)
                    VALUES (p_tenant, p_id, p_name, p_email, p_phone, p_company, p_status, p_notes, p_created_by, p_created_at, p_updated_at);
                    RETURN QUERY SELECT * FROM public.fnhost_audit_append(
                        p_chain, p_event_id, p_event_tenant, p_now, p_actor_sub, p_actor_email, p_event_type, p_severity, p_details, p_before, p_after);
                    IF clock_timestamp() > statement_timestamp() + p_limit_ms * interval '1 millisecond' THEN
                        RAISE EXCEPTION 'the caller''s deadline passed' USING ERRCODE = 'query_canceled';
                    END IF;
                END
                $fn$
                """,
            ]),
        // Listing pages read in batches (`PageBatches`): the pages that requests on one event loop ask for
        // while that loop's previous batch is in flight go to PostgreSQL in one call, one row per page
        // (`o_index`, 1-based). Each page sets the row-level-security tenant before its own query and is
        // filtered by it too, so a page never sees another tenant's rows whatever its neighbours in the batch.
        // A page's p_limit + 1 rows go into three arrays in one aggregate and the items, whether more
        // follow and the cursor are read off those (migration 10's page used a window function and
        // FILTERed aggregates: 7,300-8,000 → 10,000 calls/s in pgbench). Rows written before migration 10
        // are rendered by a function called only for them (migration 10's inline subquery was a subplan set
        // up on every call). A page without a cursor passes '' for both cursor fields, read as a position after
        // every lead, so one query (and one plan) serves first pages and pages after a cursor.
        Migration(
            version: 12, name: "listing pages in batches, one row per page",
            statements: [
                """
                CREATE FUNCTION fnhost_lead_rendered_json(l public.leads) RETURNS text LANGUAGE sql STABLE AS $fn$
                    SELECT row_to_json(x)::text FROM (SELECT l.id::text AS id, l.name AS name, l.email AS email, l.phone AS phone, l.company AS company, l.status AS status, l.notes AS notes, l.created_by AS created_by, to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, to_char(l.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at) x
                $fn$
                """,
                """
                CREATE FUNCTION fnhost_leads_json_pages(p_tenants text[], p_limits bigint[], p_after_created text[], p_after_ids text[])
                RETURNS TABLE (o_index integer, o_items text, o_more boolean, o_last_created text, o_last_id text) LANGUAGE plpgsql
                SET enable_sort = off AS $fn$
                DECLARE
                    n integer := coalesce(cardinality(p_tenants), 0);
                BEGIN
                    IF coalesce(cardinality(p_limits), 0) <> n OR coalesce(cardinality(p_after_created), 0) <> n
                       OR coalesce(cardinality(p_after_ids), 0) <> n OR n > 256 THEN
                        RAISE EXCEPTION 'a batch of pages needs one tenant, limit and cursor per page (at most 256)' USING ERRCODE = 'invalid_parameter_value';
                    END IF;
                    FOR i IN 1 .. n LOOP
                        IF p_limits[i] IS NULL OR p_limits[i] < 1 OR p_limits[i] > 1000 THEN
                            RAISE EXCEPTION 'a page''s limit is 1 to 1000' USING ERRCODE = 'invalid_parameter_value';
                        END IF;
                        PERFORM set_config('app.tenant_id', p_tenants[i], true);
                        RETURN QUERY SELECT i,
                            CASE WHEN cardinality(t.leads) > p_limits[i] THEN '[' || array_to_string(t.leads[1:p_limits[i]], ',') || ']'
                                 ELSE coalesce('[' || array_to_string(t.leads, ',') || ']', '[]') END,
                            coalesce(cardinality(t.leads), 0) > p_limits[i],
                            CASE WHEN cardinality(t.leads) > p_limits[i]
                                 THEN to_char(t.created[p_limits[i]] AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END,
                            CASE WHEN cardinality(t.leads) > p_limits[i] THEN t.ids[p_limits[i]]::text END
                        FROM (SELECT array_agg(s.lead) AS leads, array_agg(s.created_at) AS created, array_agg(s.id) AS ids FROM (
                            SELECT coalesce(l.api_json, public.fnhost_lead_rendered_json(l)) AS lead, l.created_at, l.id
                            FROM public.leads l
                            WHERE l.tenant_id = p_tenants[i] AND (l.created_at, l.id) < (coalesce(nullif(p_after_created[i], '')::timestamptz, 'infinity'),
                                                                 coalesce(nullif(p_after_ids[i], '')::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
                            ORDER BY l.created_at DESC, l.id DESC LIMIT p_limits[i] + 1) s) t;
                    END LOOP;
                END
                $fn$
                """,
            ]),
        // Creates without an idempotency key in batches (group commit, `CreateBatches`): the creates that
        // requests on one event loop ask for while that loop's previous batch is in flight go to
        // PostgreSQL in one statement, hence one transaction, one row per create (`o_index`, 1-based,
        // the item's position in `p_items`). Each item is exactly `fnhost_create_lead`'s work — its
        // tenant's row-level-security scope set before its insert, its event appended under its chain
        // head's lock — and the items run in chain order (bytes, `COLLATE "C"`, then position), so two
        // batches always lock heads in the same order and never deadlock. Past `p_limit_ms` (the
        // batch's most urgent deadline) the statement fails as a whole: nothing commits.
        Migration(
            version: 13, name: "creates in batches, one transaction per batch",
            statements: [
                """
                CREATE FUNCTION fnhost_create_leads(p_limit_ms integer, p_items jsonb)
                RETURNS TABLE (o_index integer, o_seq bigint, o_occurred_at text, o_prev_hash text, o_hash text) LANGUAGE plpgsql AS $fn$
                DECLARE
                    r record;
                BEGIN
                    IF jsonb_typeof(p_items) IS DISTINCT FROM 'array' OR jsonb_array_length(p_items) > 256 THEN
                        RAISE EXCEPTION 'a batch of creates is a JSON array of at most 256 items' USING ERRCODE = 'invalid_parameter_value';
                    END IF;
                    PERFORM set_config('lock_timeout', p_limit_ms::text, true), set_config('app.cross_tenant', 'off', true);
                    FOR r IN SELECT x.* FROM ROWS FROM (jsonb_to_recordset(p_items) AS (
                                 tenant text, id uuid, name text, email text, phone text, company text, status text, notes text,
                                 created_by text, created_at timestamptz, updated_at timestamptz, chain text, event_id uuid,
                                 event_tenant text, now text, actor_sub text, actor_email text, event_type text, severity text,
                                 details jsonb, before text, after text))
                             WITH ORDINALITY AS x(tenant, id, name, email, phone, company, status, notes, created_by, created_at,
                                 updated_at, chain, event_id, event_tenant, now, actor_sub, actor_email, event_type, severity, details,
                                 before, after, i)
                             ORDER BY x.chain COLLATE "C", x.i LOOP
                        IF r.tenant IS NULL OR r.chain IS NULL THEN
                            RAISE EXCEPTION 'a create needs its tenant and chain' USING ERRCODE = 'invalid_parameter_value';
                        END IF;
                        PERFORM set_config('app.tenant_id', r.tenant, true);
                        INSERT INTO public.leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at)
                        VALUES (r.tenant, r.id, r.name, r.email, r.phone, r.company, r.status, r.notes, r.created_by, r.created_at, r.updated_at);
                        RETURN QUERY SELECT r.i::integer, a.* FROM public.fnhost_audit_append(
                            r.chain, r.event_id, r.event_tenant, r.now, r.actor_sub, r.actor_email, r.event_type, r.severity, r.details,
                            decode(r.before, 'hex'), decode(r.after, 'hex')) a;
                    END LOOP;
                    IF clock_timestamp() > statement_timestamp() + p_limit_ms * interval '1 millisecond' THEN
                        RAISE EXCEPTION 'the caller''s deadline passed' USING ERRCODE = 'query_canceled';
                    END IF;
                END
                $fn$
                """,
            ]),
        // Creates in batches where one create's failure is its own (`CreateBatches`): each item runs in a
        // savepoint (a BEGIN … EXCEPTION block), so a value the database refuses (SQLSTATE classes 22 and
        // 23: a CHECK, a NOT NULL, a duplicate id, a NUL, text that is not what its column reads) rolls
        // back that item alone and comes back as its row's `o_error` (and `o_field`: the column or
        // constraint PostgreSQL named); the other items commit. Before, such an item made PostgreSQL
        // refuse the whole batch, which was then written again one create at a time. The chains come
        // apart from the items (`p_chains`) and each item is its own JSON text, read only inside its
        // savepoint: an item that cannot even be read (`\u0000`, which no text column takes) fails
        // alone. At most 64 items: that many savepoints fit PostgreSQL's per-backend subtransaction
        // cache (`PGPROC_MAX_CACHED_SUBXIDS`), past which every snapshot in the server slows down.
        // Anything else (the deadline, a deadlock) still fails the statement as a whole, committing
        // nothing. A new function beside migration 13's, which stays for the binary before this one
        // (a rolling deployment runs both).
        Migration(
            version: 14, name: "creates in batches, each create in a savepoint of its own",
            statements: [
                """
                CREATE FUNCTION fnhost_create_leads_each(p_limit_ms integer, p_chains text[], p_items text[])
                RETURNS TABLE (o_index integer, o_seq bigint, o_occurred_at text, o_prev_hash text, o_hash text, o_error text, o_field text)
                LANGUAGE plpgsql AS $fn$
                DECLARE
                    x record;
                    r record;
                    v_column text;
                    v_constraint text;
                BEGIN
                    IF coalesce(cardinality(p_items), 0) > 64 OR coalesce(cardinality(p_chains), 0) <> coalesce(cardinality(p_items), 0) THEN
                        RAISE EXCEPTION 'a batch of creates is at most 64 items, each with its chain' USING ERRCODE = 'invalid_parameter_value';
                    END IF;
                    PERFORM set_config('lock_timeout', p_limit_ms::text, true), set_config('app.cross_tenant', 'off', true);
                    FOR x IN SELECT c.chain, c.i::integer AS i FROM unnest(p_chains) WITH ORDINALITY AS c(chain, i)
                             ORDER BY c.chain COLLATE "C", c.i LOOP
                        o_index := x.i;
                        o_seq := NULL; o_occurred_at := NULL; o_prev_hash := NULL; o_hash := NULL; o_error := NULL; o_field := NULL;
                        BEGIN
                            SELECT * INTO STRICT r FROM json_to_record(p_items[x.i]::json) AS t(
                                tenant text, id uuid, name text, email text, phone text, company text, status text, notes text,
                                created_by text, created_at timestamptz, updated_at timestamptz, event_id uuid, event_tenant text,
                                now text, actor_sub text, actor_email text, event_type text, severity text, details jsonb,
                                before text, after text);
                            IF r.tenant IS NULL OR x.chain IS NULL THEN
                                RAISE EXCEPTION 'a create needs its tenant and chain' USING ERRCODE = 'null_value_not_allowed';
                            END IF;
                            PERFORM set_config('app.tenant_id', r.tenant, true);
                            INSERT INTO public.leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at)
                            VALUES (r.tenant, r.id, r.name, r.email, r.phone, r.company, r.status, r.notes, r.created_by, r.created_at, r.updated_at);
                            SELECT a.o_seq, a.o_occurred_at, a.o_prev_hash, a.o_hash INTO STRICT o_seq, o_occurred_at, o_prev_hash, o_hash
                            FROM public.fnhost_audit_append(
                                x.chain, r.event_id, r.event_tenant, r.now, r.actor_sub, r.actor_email, r.event_type, r.severity, r.details,
                                decode(r.before, 'hex'), decode(r.after, 'hex')) a;
                        EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
                            GET STACKED DIAGNOSTICS o_error = RETURNED_SQLSTATE, v_column = COLUMN_NAME, v_constraint = CONSTRAINT_NAME;
                            o_field := coalesce(nullif(v_column, ''), nullif(v_constraint, ''));
                            o_seq := NULL; o_occurred_at := NULL; o_prev_hash := NULL; o_hash := NULL;
                        END;
                        RETURN NEXT;
                    END LOOP;
                    IF clock_timestamp() > statement_timestamp() + p_limit_ms * interval '1 millisecond' THEN
                        RAISE EXCEPTION 'the caller''s deadline passed' USING ERRCODE = 'query_canceled';
                    END IF;
                END
                $fn$
                """,
            ]),
        wallsPostgres,
        createRunsPostgres,
        ownerJobsPostgres,
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
            ]),
        Migration(
            version: 2, name: "hash-chained audit log",
            statements: [
                """
                CREATE TABLE audit_events (
                    chain_id           TEXT    NOT NULL,
                    seq                INTEGER NOT NULL CHECK (seq >= 1),
                    event_id           TEXT    NOT NULL UNIQUE,
                    tenant_id          TEXT,
                    occurred_at        TEXT    NOT NULL,
                    actor_sub          TEXT,
                    actor_email        TEXT,
                    event_type         TEXT    NOT NULL,
                    severity           TEXT    NOT NULL CHECK (severity IN ('info','warning','high','critical')),
                    details            TEXT    NOT NULL CHECK (json_valid(details) AND json_type(details) = 'object'),
                    prev_event_hash    TEXT    NOT NULL CHECK (length(prev_event_hash) = 64),
                    current_event_hash TEXT    NOT NULL CHECK (length(current_event_hash) = 64),
                    PRIMARY KEY (chain_id, seq),
                    CHECK ((chain_id = 'platform' AND tenant_id IS NULL) OR (chain_id <> 'platform' AND tenant_id = chain_id))
                ) WITHOUT ROWID
                """,
                "CREATE INDEX audit_events_tenant_newest ON audit_events (tenant_id, occurred_at DESC, seq DESC)",
                """
                CREATE TABLE audit_chain_heads (
                    chain_id         TEXT    PRIMARY KEY,
                    seq              INTEGER NOT NULL CHECK (seq >= 0),
                    head_hash        TEXT    NOT NULL,
                    last_occurred_at TEXT
                )
                """,
                """
                CREATE TABLE audit_checkpoints (
                    chain_id    TEXT    PRIMARY KEY,
                    seq         INTEGER NOT NULL CHECK (seq >= 1),
                    event_hash  TEXT    NOT NULL,
                    verified_at TEXT    NOT NULL
                )
                """,
                // SQLite has no TRUNCATE: `DELETE FROM t` without WHERE runs these triggers too.
                "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END",
                "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END",
                """
                CREATE TRIGGER audit_chain_heads_forward BEFORE UPDATE ON audit_chain_heads
                WHEN NEW.chain_id <> OLD.chain_id OR NEW.seq < OLD.seq
                BEGIN SELECT RAISE(ABORT, 'audit_chain_heads: a chain position only moves forward'); END
                """,
                "CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads BEGIN SELECT RAISE(ABORT, 'audit_chain_heads: DELETE refused'); END",
                """
                CREATE TRIGGER audit_checkpoints_forward BEFORE UPDATE ON audit_checkpoints
                WHEN NEW.chain_id <> OLD.chain_id OR NEW.seq < OLD.seq
                BEGIN SELECT RAISE(ABORT, 'audit_checkpoints: a chain position only moves forward'); END
                """,
                "CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit_checkpoints: DELETE refused'); END",
            ]),
        Migration(
            version: 3, name: "email outbox",
            statements: [
                """
                CREATE TABLE email_outbox (
                    tenant_id       TEXT    NOT NULL,
                    id              TEXT    NOT NULL,
                    idempotency_key TEXT    NOT NULL,
                    request_hash    TEXT    NOT NULL,
                    template        TEXT    NOT NULL,
                    recipient       TEXT    NOT NULL,
                    vars            TEXT    NOT NULL CHECK (json_valid(vars) AND json_type(vars) = 'object'),
                    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','sent','dead')),
                    attempts        INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at TEXT    NOT NULL,
                    lease_owner     TEXT,
                    lease_until     TEXT,
                    message_id      TEXT,
                    last_error      TEXT,
                    created_at      TEXT    NOT NULL,
                    sent_at         TEXT,
                    PRIMARY KEY (tenant_id, id),
                    UNIQUE (tenant_id, idempotency_key)
                ) WITHOUT ROWID
                """,
                "CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at) WHERE status = 'pending'",
            ]),
        Migration(
            version: 4, name: "idempotent lead creates",
            statements: [
                """
                CREATE TABLE lead_requests (
                    tenant_id       TEXT NOT NULL,
                    idempotency_key TEXT NOT NULL,
                    request_hash    TEXT NOT NULL,
                    lead_id         TEXT NOT NULL,
                    response        TEXT NOT NULL,
                    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                    PRIMARY KEY (tenant_id, idempotency_key)
                ) WITHOUT ROWID
                """,
            ]),
        Migration(
            version: 5, name: "timer occurrences shared by every instance",
            statements: [
                """
                CREATE TABLE timer_runs (
                    function     TEXT NOT NULL,
                    scheduled_at TEXT NOT NULL,
                    claimed_by   TEXT NOT NULL,
                    claimed_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                    PRIMARY KEY (function, scheduled_at)
                ) WITHOUT ROWID
                """,
                """
                CREATE TABLE timer_status (
                    function     TEXT PRIMARY KEY,
                    last_run     TEXT NOT NULL,
                    next_run     TEXT NOT NULL,
                    last_updated TEXT NOT NULL
                ) WITHOUT ROWID
                """,
            ]),
        Migration(
            version: 6, name: "Merkle tree and signed checkpoints per audit chain",
            statements: [
                "ALTER TABLE audit_checkpoints RENAME TO audit_verifier_positions",
                """
                CREATE TABLE audit_tree_nodes (
                    chain_id TEXT    NOT NULL,
                    level    INTEGER NOT NULL CHECK (level BETWEEN 0 AND 62),
                    idx      INTEGER NOT NULL CHECK (idx >= 0),
                    hash     TEXT    NOT NULL CHECK (length(hash) = 64),
                    PRIMARY KEY (chain_id, level, idx)
                ) WITHOUT ROWID
                """,
                """
                CREATE TABLE audit_checkpoints (
                    chain_id  TEXT    NOT NULL,
                    tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
                    root_hash TEXT    NOT NULL CHECK (length(root_hash) = 64),
                    note      TEXT    NOT NULL,
                    signed_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                    PRIMARY KEY (chain_id, tree_size)
                ) WITHOUT ROWID
                """,
                "CREATE TRIGGER audit_tree_nodes_no_update BEFORE UPDATE ON audit_tree_nodes BEGIN SELECT RAISE(ABORT, 'audit_tree_nodes is append-only: UPDATE refused'); END",
                "CREATE TRIGGER audit_tree_nodes_no_delete BEFORE DELETE ON audit_tree_nodes BEGIN SELECT RAISE(ABORT, 'audit_tree_nodes is append-only: DELETE refused'); END",
                "CREATE TRIGGER audit_signed_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused'); END",
                "CREATE TRIGGER audit_signed_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused'); END",
            ]),
        Migration(version: 7, name: "row-level security (PostgreSQL only; nothing to do on SQLite)", statements: []),
        Migration(
            version: 8, name: "session revocations in the database (instances without Redis)",
            statements: [
                """
                CREATE TABLE session_revocations (
                    field      TEXT    PRIMARY KEY,
                    tenant_id  TEXT    NOT NULL,
                    record     TEXT    NOT NULL,
                    expires_at INTEGER NOT NULL
                ) WITHOUT ROWID
                """,
                "CREATE INDEX session_revocations_expiry ON session_revocations (expires_at)",
            ]),
        Migration(version: 9, name: "listing plans (PostgreSQL only; nothing to do on SQLite)", statements: []),
        wallsSQLite,
    ]
}

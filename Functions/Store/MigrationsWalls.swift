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

    /// Migration 16 (docs/data.md, docs/benchmarks.md): migration 14's batch, each chain's head locked once and moved
    /// once. Migration 14 appended every item through `fnhost_audit_append` in a savepoint of its own, so a batch of
    /// n creates on one chain locked and updated that chain's head row n times in n subtransactions: each update
    /// found the row through a chain of versions the batch itself had written, and locking a row a sibling
    /// subtransaction had updated made PostgreSQL record both lockers (a multixact), so the cost grew with the square
    /// of the batch (pgbench, one chain, 4 clients: 64 items 3.7 batches/s against 43 now; 8 items 84 against 257).
    /// Now a run of one chain's items locks its head at the top level (outside every savepoint), seals each item
    /// from the values held in the function, inserts its event inside its savepoint and moves the held values only
    /// when that savepoint succeeded; the head row is written once per run. A refused item leaves no gap: the next
    /// item takes its seq. A create's chain is its tenant's (the head is locked under that tenant's row-level
    /// scope); an item naming another chain is refused alone. The same signature and answers as migration 14, so
    /// the binary before this one calls it unchanged.
    static let createRunsPostgres = Migration(
        version: 16, name: "creates in batches: each chain's head locked and moved once per batch",
        statements: [
            """
            CREATE OR REPLACE FUNCTION fnhost_create_leads_each(p_limit_ms integer, p_chains text[], p_items text[])
            RETURNS TABLE (o_index integer, o_seq bigint, o_occurred_at text, o_prev_hash text, o_hash text, o_error text, o_field text)
            LANGUAGE plpgsql AS $fn$
            DECLARE
                x record;
                r record;
                v_chain text;
                v_seq bigint;
                v_prev text;
                v_last timestamptz;
                v_moved boolean := false;
                v_at text;
                v_hash text;
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
                    IF x.chain IS DISTINCT FROM v_chain THEN
                        IF v_moved THEN
                            UPDATE public.audit_chain_heads SET seq = v_seq, head_hash = v_prev, last_occurred_at = v_last WHERE chain_id = v_chain;
                        END IF;
                        v_chain := x.chain;
                        v_moved := false;
                        IF x.chain IS NOT NULL THEN
                            PERFORM set_config('app.tenant_id', x.chain, true);
                            SELECT h.seq, h.head_hash, h.last_occurred_at INTO v_seq, v_prev, v_last
                            FROM public.audit_chain_heads h WHERE h.chain_id = x.chain FOR UPDATE;
                            IF NOT FOUND THEN
                                INSERT INTO public.audit_chain_heads (chain_id, seq, head_hash) VALUES (x.chain, 0, repeat('0', 64))
                                ON CONFLICT (chain_id) DO NOTHING;
                                SELECT h.seq, h.head_hash, h.last_occurred_at INTO STRICT v_seq, v_prev, v_last
                                FROM public.audit_chain_heads h WHERE h.chain_id = x.chain FOR UPDATE;
                            END IF;
                        END IF;
                    END IF;
                    BEGIN
                        SELECT * INTO STRICT r FROM json_to_record(p_items[x.i]::json) AS t(
                            tenant text, id uuid, name text, email text, phone text, company text, status text, notes text,
                            created_by text, created_at timestamptz, updated_at timestamptz, event_id uuid, event_tenant text,
                            now text, actor_sub text, actor_email text, event_type text, severity text, details jsonb,
                            before text, after text);
                        IF r.tenant IS NULL OR x.chain IS NULL OR r.tenant <> x.chain THEN
                            RAISE EXCEPTION 'a create needs its tenant, and its chain is its tenant''s' USING ERRCODE = 'null_value_not_allowed';
                        END IF;
                        INSERT INTO public.leads (tenant_id, id, name, email, phone, company, status, notes, created_by, created_at, updated_at)
                        VALUES (r.tenant, r.id, r.name, r.email, r.phone, r.company, r.status, r.notes, r.created_by, r.created_at, r.updated_at);
                        v_at := CASE WHEN v_last IS NOT NULL AND v_last > r.now::timestamptz
                                     THEN to_char(v_last AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') ELSE r.now END;
                        v_hash := encode(sha256(convert_to(v_prev, 'UTF8') || decode('0a', 'hex') || decode(r.before, 'hex')
                                                || convert_to(v_at || '","seq":' || (v_seq + 1)::text, 'UTF8') || decode(r.after, 'hex')), 'hex');
                        INSERT INTO public.audit_events (chain_id, seq, event_id, tenant_id, occurred_at, actor_sub, actor_email, event_type,
                                                         severity, details, prev_event_hash, current_event_hash)
                        VALUES (x.chain, v_seq + 1, r.event_id, r.event_tenant, v_at::timestamptz, r.actor_sub, r.actor_email, r.event_type,
                                r.severity, r.details, v_prev, v_hash);
                        o_seq := v_seq + 1; o_occurred_at := v_at; o_prev_hash := v_prev; o_hash := v_hash;
                        v_seq := v_seq + 1; v_prev := v_hash; v_last := v_at::timestamptz; v_moved := true;
                    EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
                        GET STACKED DIAGNOSTICS o_error = RETURNED_SQLSTATE, v_column = COLUMN_NAME, v_constraint = CONSTRAINT_NAME;
                        o_field := coalesce(nullif(v_column, ''), nullif(v_constraint, ''));
                        o_seq := NULL; o_occurred_at := NULL; o_prev_hash := NULL; o_hash := NULL;
                    END;
                    RETURN NEXT;
                END LOOP;
                IF v_moved THEN
                    UPDATE public.audit_chain_heads SET seq = v_seq, head_hash = v_prev, last_occurred_at = v_last WHERE chain_id = v_chain;
                END IF;
                IF clock_timestamp() > statement_timestamp() + p_limit_ms * interval '1 millisecond' THEN
                    RAISE EXCEPTION 'the caller''s deadline passed' USING ERRCODE = 'query_canceled';
                END IF;
            END
            $fn$
            """,
        ])

    /// Migration 17 (docs/data.md, docs/security.md): the narrow cross-tenant jobs run as the schema owner, through
    /// functions that do exactly their job; the runtime role's own settings open no other tenant's audit log or outbox.
    /// - The `cross_tenant` policies of the audit tables and the outbox are replaced by `owner_jobs` policies that name
    ///   the schema owner (the role running this migration): `SET app.cross_tenant = 'on'` by any other role changes
    ///   nothing it can see. The owner's functions below (SECURITY DEFINER, `search_path` fixed to `pg_catalog, pg_temp`
    ///   with every relation qualified, `app.cross_tenant` turned on inside their body and restored before they
    ///   return — a function's own `SET app.…` clause needs a superuser for a custom setting — EXECUTE granted to the
    ///   runtime role alone) are the cross-tenant path: the
    ///   outbox claim and backlog, the verifier's chain list and positions, a super admin's read of every chain,
    ///   and the revocation and purge poll. Holding the runtime credentials gives those jobs' answers, nothing more.
    /// - The platform chain is a scope of its own (`app.tenant_id = 'platform'`, a name no tenant can have): the
    ///   tables keyed by chain already match it, and `audit_events` gains a policy for the platform chain's rows
    ///   (their `tenant_id` is NULL). It opens no tenant's rows.
    /// - Revocations and purges keep their read-only `cross_tenant_read` policy for the binary before this one, which
    ///   polls them directly (a poll that found nothing would accept revoked tokens during a rolling deployment); the
    ///   next release's migration drops it. The binary before this one skips its timers (outbox, verifier) once its
    ///   schema watcher has seen the newer schema (within 15 s; until then its outbox claim and verifier find nothing
    ///   and its backlog gauge reads 0), and its platform-chain and cross-chain audit reads come back empty (in a
    ///   two-role deployment) until it is replaced: nothing it does is opened, some of it answers less.
    /// With one role for migrations and runtime (development) the owner is the runtime: the policies then behave as
    /// before (a second wall against the module's own bugs, not against its credentials; docs/security.md).
    static let ownerJobsPostgres = Migration(
        version: 17, name: "cross-tenant jobs through the schema owner's functions; the platform chain a scope of its own",
        statements: [
            """
            CREATE POLICY platform_chain ON audit_events
                USING (chain_id = 'platform' AND current_setting('app.tenant_id', true) = 'platform')
                WITH CHECK (chain_id = 'platform' AND tenant_id IS NULL AND current_setting('app.tenant_id', true) = 'platform')
            """,
            """
            DO $do$
            DECLARE
                t text;
            BEGIN
                FOREACH t IN ARRAY ARRAY['email_outbox', 'audit_events', 'audit_chain_heads', 'audit_verifier_positions',
                                         'audit_tree_nodes', 'audit_checkpoints'] LOOP
                    EXECUTE format('DROP POLICY cross_tenant ON public.%I', t);
                    EXECUTE format('CREATE POLICY owner_jobs ON public.%I TO %I USING (current_setting(''app.cross_tenant'', true) = ''on'') '
                                   'WITH CHECK (current_setting(''app.cross_tenant'', true) = ''on'')', t, current_user);
                END LOOP;
                FOREACH t IN ARRAY ARRAY['session_revocations', 'rbac_purges'] LOOP
                    EXECUTE format('CREATE POLICY owner_jobs ON public.%I FOR SELECT TO %I USING (current_setting(''app.cross_tenant'', true) = ''on'')',
                                   t, current_user);
                END LOOP;
            END
            $do$
            """,
            """
            CREATE FUNCTION fnhost_outbox_claim(p_owner text, p_now timestamptz, p_lease_until timestamptz, p_limit integer)
            RETURNS SETOF public.email_outbox LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                RETURN QUERY WITH claimed AS (
                    UPDATE public.email_outbox SET lease_owner = p_owner, lease_until = p_lease_until
                    WHERE (tenant_id, id) IN (
                        SELECT o.tenant_id, o.id FROM public.email_outbox o
                        WHERE o.status = 'pending' AND o.next_attempt_at <= p_now AND (o.lease_until IS NULL OR o.lease_until < p_now)
                        ORDER BY o.next_attempt_at LIMIT least(greatest(p_limit, 0), 1000)
                        FOR UPDATE SKIP LOCKED)
                    RETURNING *)
                SELECT * FROM claimed;
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            CREATE FUNCTION fnhost_outbox_backlog() RETURNS TABLE (o_pending integer, o_oldest timestamptz) LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                RETURN QUERY SELECT count(*)::integer, min(e.created_at) FROM public.email_outbox e WHERE e.status = 'pending';
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            CREATE FUNCTION fnhost_revocations_in_force(p_now bigint) RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                RETURN QUERY SELECT r.record FROM public.session_revocations r WHERE r.expires_at > p_now;
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            CREATE FUNCTION fnhost_purges_in_force(p_now bigint)
            RETURNS TABLE (o_tenant text, o_user text, o_purged_at double precision, o_expires_at bigint) LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                RETURN QUERY SELECT p.tenant_id, p.user_id, p.purged_at, p.expires_at FROM public.rbac_purges p WHERE p.expires_at > p_now;
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            CREATE FUNCTION fnhost_audit_chain_ids() RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                RETURN QUERY SELECT h.chain_id FROM public.audit_chain_heads h ORDER BY h.chain_id;
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            CREATE FUNCTION fnhost_audit_chains_with_events() RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                RETURN QUERY WITH RECURSIVE chains(id) AS (
                    SELECT min(e.chain_id) FROM public.audit_events e
                    UNION ALL
                    SELECT (SELECT min(e.chain_id) FROM public.audit_events e WHERE e.chain_id > chains.id) FROM chains WHERE chains.id IS NOT NULL
                )
                SELECT chains.id FROM chains WHERE chains.id IS NOT NULL;
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            CREATE FUNCTION fnhost_audit_verifier_positions() RETURNS TABLE (o_chain text, o_seq bigint, o_hash text)
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                RETURN QUERY SELECT v.chain_id, v.seq, v.event_hash FROM public.audit_verifier_positions v;
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            CREATE FUNCTION fnhost_audit_events_all(
                p_event_type text, p_since timestamptz, p_until timestamptz, p_actor text,
                p_after_at timestamptz, p_after_seq bigint, p_after_chain text, p_oldest_first boolean, p_limit integer)
            RETURNS SETOF public.audit_events LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
            DECLARE
                v_setting text := current_setting('app.cross_tenant', true);
            BEGIN
                PERFORM set_config('app.cross_tenant', 'on', true);
                IF p_oldest_first THEN
                    RETURN QUERY SELECT * FROM public.audit_events e
                    WHERE (p_event_type IS NULL OR e.event_type = p_event_type) AND (p_since IS NULL OR e.occurred_at >= p_since)
                      AND (p_until IS NULL OR e.occurred_at <= p_until) AND (p_actor IS NULL OR e.actor_sub = p_actor)
                      AND (p_after_at IS NULL OR (e.occurred_at, e.seq, e.chain_id) > (p_after_at, p_after_seq, p_after_chain))
                    ORDER BY e.occurred_at, e.seq, e.chain_id LIMIT least(greatest(p_limit, 0), 1000);
                ELSE
                    RETURN QUERY SELECT * FROM public.audit_events e
                    WHERE (p_event_type IS NULL OR e.event_type = p_event_type) AND (p_since IS NULL OR e.occurred_at >= p_since)
                      AND (p_until IS NULL OR e.occurred_at <= p_until) AND (p_actor IS NULL OR e.actor_sub = p_actor)
                      AND (p_after_at IS NULL OR (e.occurred_at, e.seq, e.chain_id) < (p_after_at, p_after_seq, p_after_chain))
                    ORDER BY e.occurred_at DESC, e.seq DESC, e.chain_id DESC LIMIT least(greatest(p_limit, 0), 1000);
                END IF;
                PERFORM set_config('app.cross_tenant', coalesce(v_setting, ''), true);
            END
            $fn$
            """,
            """
            REVOKE ALL ON FUNCTION fnhost_outbox_claim(text, timestamptz, timestamptz, integer), fnhost_outbox_backlog(),
                fnhost_revocations_in_force(bigint), fnhost_purges_in_force(bigint), fnhost_audit_chain_ids(),
                fnhost_audit_chains_with_events(), fnhost_audit_verifier_positions(),
                fnhost_audit_events_all(text, timestamptz, timestamptz, text, timestamptz, bigint, text, boolean, integer) FROM PUBLIC
            """,
        ])
}

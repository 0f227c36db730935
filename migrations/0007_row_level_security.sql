-- 0007 row-level security: the narrow, explicit doors past the tenant policies.
-- Why: every tenant table gets ENABLE + FORCE ROW LEVEL SECURITY and the policy `kassa_tenant`
-- from the migration runner's final step (kassa/store/rls.py), so the API's role sees a row only
-- inside a transaction scoped to its tenant. Three things the platform does are cross-tenant by
-- nature; each gets a SECURITY DEFINER function (run as the schema owner, which has BYPASSRLS)
-- that returns only what its caller needs, instead of a policy that would open whole tables:
--   * authentication finds an API key by the hash of its secret before any tenant is known,
--     and gets back only the principal (key id, role, tenant), never another key's row;
--   * the expiry sweeper finds due holds of every tenant (tenant and transfer id only), and
--     then expires each through the normal, tenant-scoped ledger batch;
--   * the idempotency purge deletes records past retention, whatever their tenant.
-- EXECUTE is granted to the application roles only (not PUBLIC) by the same final step.

CREATE FUNCTION kassa_authenticate(key_hash bytea)
RETURNS TABLE (id text, role text, tenant_id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT k.id, k.role, k.tenant_id FROM public.api_keys k
    WHERE k.secret_hash = key_hash AND k.revoked_at IS NULL
$$;

CREATE FUNCTION kassa_due_pending_transfers(max_count integer)
RETURNS TABLE (tenant_id text, id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT t.tenant_id, t.id FROM public.transfers t
    WHERE t.status = 'pending' AND t.expires_at <= now()
    ORDER BY t.expires_at LIMIT max_count
$$;

CREATE FUNCTION kassa_purge_idempotency_keys(older_than_s integer, max_count integer)
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH gone AS (
        DELETE FROM public.idempotency_keys WHERE ctid IN (
            SELECT ctid FROM public.idempotency_keys
            WHERE created_at < now() - make_interval(secs => older_than_s) LIMIT max_count)
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

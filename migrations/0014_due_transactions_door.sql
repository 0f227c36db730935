-- 0014: the expiry sweeper's door to due pending transactions of every tenant.
-- Why: with row-level security (0007) the application role sees only the tenants of its
-- transaction's scope, but finding due holds is cross-tenant by nature. Like the transfers'
-- door of 0007, this SECURITY DEFINER function returns only (tenant, id) of due pending
-- transactions; each is then expired through the normal, tenant-scoped ledger batch.
CREATE FUNCTION kassa_due_pending_transactions(max_count integer)
RETURNS TABLE (tenant_id text, id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT t.tenant_id, t.id FROM public.transactions t
    WHERE t.status = 'pending' AND t.expires_at <= now()
    ORDER BY t.expires_at LIMIT max_count
$$;
REVOKE EXECUTE ON FUNCTION kassa_due_pending_transactions(integer) FROM PUBLIC;

-- 0040 API keys: scopes, expiry, rotation, per-key rate limits, last use, instant revocation.
-- Why (issue 11): a tenant hands out narrow keys (a read-only dashboard key, a payments-only
-- service key) instead of sharing one all-powerful secret, rotates them without downtime and
-- revokes a leaked one at once in every API process.
--   * `scopes`: what the key may do (kassa.identity.domain.scopes lists them). Existing keys,
--     and a tenant's first key, get `admin` (everything of the tenant), so they keep working.
--   * `expires_at`: optional hard end; rotation sets it on the old key (the overlap).
--   * `rate_limit_per_s` / `rate_limit_burst`: NULL means the named default (shared/limits.py).
--   * `last_used_at`: written at most once a minute per key (kassa_touch_api_keys), never on
--     the request's own path.
--   * a trigger NOTIFYs `kassa_api_keys` with the key id whenever anything authentication
--     depends on changes (revocation, expiry, scopes, limits, deletion); every API process
--     LISTENs and drops that key from its cache, so revocation does not wait for a cache TTL.
ALTER TABLE api_keys
    ADD COLUMN name              text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    ADD COLUMN scopes            text[] NOT NULL DEFAULT ARRAY['admin']::text[],
    ADD COLUMN expires_at        timestamptz,
    ADD COLUMN last_used_at      timestamptz,
    ADD COLUMN rate_limit_per_s  integer CHECK (rate_limit_per_s BETWEEN 1 AND 1000000),
    ADD COLUMN rate_limit_burst  integer CHECK (rate_limit_burst BETWEEN 1 AND 1000000),
    ADD COLUMN rotated_from      text,
    ADD CONSTRAINT api_keys_scopes_present CHECK (cardinality(scopes) BETWEEN 1 AND 32),
    ADD CONSTRAINT api_keys_scope_names CHECK (array_to_string(scopes, ',') ~ '^[a-z_]+(:[a-z_]+)?(,[a-z_]+(:[a-z_]+)?)*$');
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at, id);

-- The principal of a live key: not revoked and not past its expiry. Its result grows, so the
-- function is replaced (a changed result type cannot be CREATE OR REPLACEd).
DROP FUNCTION kassa_authenticate(bytea);
CREATE FUNCTION kassa_authenticate(key_hash bytea)
RETURNS TABLE (id text, role text, tenant_id text, scopes text[], expires_at timestamptz,
               rate_limit_per_s integer, rate_limit_burst integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT k.id, k.role, k.tenant_id, k.scopes, k.expires_at, k.rate_limit_per_s, k.rate_limit_burst
    FROM public.api_keys k
    WHERE k.secret_hash = key_hash AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
$$;

-- Last use, for the keys a process saw since its last flush. Admin keys belong to no tenant
-- (invisible under row-level security), hence a definer function; it writes one column only,
-- and at most once a minute per key whatever the callers do.
CREATE FUNCTION kassa_touch_api_keys(key_ids text[])
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    UPDATE public.api_keys SET last_used_at = now()
    WHERE id = ANY (key_ids) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
$$;

CREATE FUNCTION kassa_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kassa_api_keys', OLD.id);
    RETURN NULL;
END $$;
-- Not on last_used_at: touching a key must not flush every process's cache once a minute.
CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF revoked_at, expires_at, scopes, rate_limit_per_s, rate_limit_burst, secret_hash OR DELETE
    ON api_keys FOR EACH ROW EXECUTE FUNCTION kassa_api_key_changed();

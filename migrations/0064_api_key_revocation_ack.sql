-- 0064 API key changes acknowledged by every API process before the change is answered.
-- Why (issue 11, "revocation that takes effect at once in every API process"): a NOTIFY that
-- reached the revoking process's listener has reached every listener's socket, but a process
-- whose event loop is descheduled has not read it yet and can still serve a request from its
-- cache. Every API process therefore holds a lease on its cache (kassa.identity.authn explains
-- the argument), recorded here, and the revoker waits until each process has either confirmed
-- the change or let its lease lapse.
--   * `api_key_epoch`: one row, bumped by every change that authentication depends on, in the
--     change's own transaction; the NOTIFY payload becomes "<epoch> <key id>". The row lock
--     orders changes, so epochs commit in order and listeners see them in order.
--   * `api_key_listeners`: one row per LISTEN connection: the last epoch it has applied to its
--     cache and until when (database clock) its cache may be trusted without a new lease.
--     Not tenant data: no tenant_id, no row-level security.
--   * `kassa_api_key_lease(listener, applied, lease_s)`: renews a listener's lease and returns
--     the current epoch. It reads the epoch under a shared advisory lock that every change
--     holds exclusively until its commit, so a renewal either commits before a change (and the
--     revoker sees its lease) or reads that change's epoch (and the listener applies it first).
CREATE TABLE api_key_epoch (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch     bigint NOT NULL
);
INSERT INTO api_key_epoch (singleton, epoch) VALUES (true, 0);

CREATE TABLE api_key_listeners (
    id              text PRIMARY KEY CHECK (length(id) <= 64),
    confirmed_epoch bigint NOT NULL,
    lease_until     timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION kassa_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('kassa.api_key_epoch', 0));
    UPDATE api_key_epoch SET epoch = epoch + 1 WHERE singleton RETURNING epoch INTO changed;
    PERFORM pg_notify('kassa_api_keys', changed::text || ' ' || OLD.id);
    RETURN NULL;
END $$;

CREATE FUNCTION kassa_api_key_lease(listener text, applied bigint, lease_s double precision)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current_epoch bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('kassa.api_key_epoch', 0));
    -- A statement of its own, hence a snapshot taken after the lock: it sees every change
    -- that committed before the lock was granted.
    SELECT epoch INTO current_epoch FROM api_key_epoch WHERE singleton;
    INSERT INTO api_key_listeners (id, confirmed_epoch, lease_until)
    VALUES (listener, applied, clock_timestamp() + make_interval(secs => lease_s))
    ON CONFLICT (id) DO UPDATE SET confirmed_epoch = excluded.confirmed_epoch, lease_until = excluded.lease_until;
    RETURN current_epoch;
END $$;

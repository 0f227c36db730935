-- 0075 consumer open: one statement opens a consumer's transaction (lock its position, check the
-- fetched messages' digests, scope the transaction to the verified batches' tenants, move the
-- position past them).
-- Why: a consumer paid four round trips for this per fetched batch (lock, digests, scope, and
-- the position save before COMMIT); under the single-transfer load the worker role's CPU was
-- mostly round trips, not events. The position moves here, before the handler runs, but in the
-- same transaction as its effects: a handler that fails, or a gap the caller finds, rolls the
-- move back with everything else, so effect and position still commit together. The caller
-- checks that the position it computes from the returned values equals the one moved to.
--
-- p_digests[i] is the SHA-256 of message i's bytes, or NULL for a batch read back from the
-- outbox (trusted); p_tenants[i] its tenants as a `kassa.store.tenancy.tenant_list`. Returns
-- the position before, the position after, and the 1-based indexes of the verified messages.
CREATE FUNCTION kassa_consumer_open(p_consumer text, p_batches bigint[], p_digests bytea[], p_tenants text[])
RETURNS TABLE (position_before bigint, position_after bigint, verified integer[])
LANGUAGE plpgsql AS $$
DECLARE
    v_at bigint;
    v_ok integer[];
    v_nos bigint[];
    v_scope text;
    v_top bigint;
BEGIN
    SELECT p.batch_no INTO v_at FROM event_consumer_positions p WHERE p.consumer = p_consumer FOR UPDATE;
    v_at := coalesce(v_at, 0);
    SELECT coalesce(array_agg(m.ord::integer ORDER BY m.ord), '{}'), coalesce(array_agg(m.n), '{}'),
           coalesce(string_agg(m.t, ',') FILTER (WHERE m.t <> ''), '')
      INTO v_ok, v_nos, v_scope
      FROM unnest(p_batches, p_digests, p_tenants) WITH ORDINALITY AS m (n, d, t, ord)
      LEFT JOIN relay_batches b ON b.batch_no = m.n
     WHERE m.d IS NULL OR b.digest = m.d;
    -- Only verified batches' tenants: nothing of a refused message's content is used.
    PERFORM set_config('kassa.tenant_id',
                       (SELECT coalesce(string_agg(DISTINCT x, ',' ORDER BY x), '')
                          FROM unnest(string_to_array(v_scope, ',')) AS x),
                       true);
    SELECT max(n) INTO v_top FROM unnest(v_nos) AS n;
    -- Move only over a run of batches without a gap (the caller rolls back on a gap anyway).
    IF v_top > v_at AND (SELECT count(DISTINCT n) FROM unnest(v_nos) AS n WHERE n > v_at) = v_top - v_at THEN
        UPDATE event_consumer_positions SET batch_no = v_top, updated_at = now() WHERE consumer = p_consumer;
        INSERT INTO event_consumer_batches (consumer, batch_no)
        SELECT p_consumer, n FROM generate_series(v_at + 1, v_top) AS n;
    ELSE
        v_top := v_at;
    END IF;
    RETURN QUERY SELECT v_at, v_top, v_ok;
END
$$;

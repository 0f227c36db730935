-- 0061 pay-per-view: refuse a purchase priced from a content version that is no longer current.
-- Why: each API process caches the catalogue (a purchase then reads no content row before the
-- ledger batch), so a process may price a purchase from a content another process has just
-- changed. The purchase write compares the price, fee, split and access it copied with the
-- content row inside the ledger's transaction and calls this function for a mismatch: the
-- check_violation (constraint `purchases_content_current`) fails that write, nothing is charged,
-- and the service prices the purchase again from the database. A plain function rather than a
-- constraint because the comparison is with another table's current row.
CREATE FUNCTION kassa_ppv_content_changed(content_id text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'content % changed after this purchase was priced', content_id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'purchases_content_current';
END
$$;

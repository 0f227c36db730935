-- 0073 pay-per-view: refuse a purchase whose access window is over by the time it is written.
-- Why: a purchase of a content whose fixed window (`ends_at` plus `replay_days`) had already
-- ended was sold, and the wallet charged for an entitlement expired at once. The service
-- refuses such a sale while pricing (409 `content_access_ended`), by its own clock; the window
-- itself is cut by the ledger batch's database time, taken after the batch's locks. A sale
-- priced a moment before the end and written after it would still buy nothing, so the
-- purchase write calls this function for it: the check_violation (constraint
-- `purchases_access_open`) fails the write inside the ledger's transaction, nothing is charged,
-- the batcher retries the batch's other jobs on their own, and the service answers
-- `content_access_ended`. A function, as 0061's, because the end is computed by the writer
-- from the content's access and the batch's time, not stored on a row a constraint could see.
CREATE FUNCTION kassa_ppv_access_ended(content_id text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'the access window of content % has ended', content_id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'purchases_access_open';
END
$$;

-- 0071: the balance update of a ledger batch probes the accounts it changes instead of scanning
-- the tenant's accounts, and an account's id and currency are checked when they are written, not
-- on every balance update.
-- Why (docs/ledger-cost.md, "The write's cost per statement"): measured on the single-transfer
-- path (batches of 18 keyed transfers, the API's role), the batch's write statement cost about
-- 130 us of backend CPU per transfer, 60 us in 1,000-transfer batches.
-- 1. Its `UPDATE accounts ... FROM json_to_recordset(...)` was planned as a hash join over a
--    sequential scan of every account of the tenant, with the row-level security filter
--    evaluated on each: the planner estimates 100 rows for any JSON document and about 3.4 per
--    index probe, so for a tenant of up to some 8,000 accounts a scan looks cheaper than the
--    probes. It is not: 1,000 accounts scanned cost ~300 us per batch, 36 probes ~60 us. No
--    rewording of the join changes the estimate, so the update runs in a function that plans it
--    with hash and merge joins off: a nested loop over the batch's rows, one primary-key probe
--    each, whatever the tenant's size (measured cheaper at 1,000 rows too). RLS applies as
--    before (SECURITY INVOKER): a row outside the scope is not updated, and the engine's count
--    check then fails the batch.
-- 2. PostgreSQL evaluates every CHECK of a row on every UPDATE, so the two regular expressions on
--    `accounts.id` and `.currency` ran on each balance update (four per transfer, twenty per
--    five-posting transaction). The same rules, with the same error code (check_violation) and
--    constraint names, are now enforced by a trigger that fires on INSERT and on an UPDATE naming
--    `id` or `currency`, the only writes that can change them (balance updates never name them).
-- 3. The id rule `^[A-Za-z0-9_.:-]{1,64}$` is the costly form of itself: a bounded repetition
--    compiles to 64 copies of the character class, and the regex engine builds its DFA states
--    anew on every call (`miss`/`shortest` in a profile), about 6 us for a 36-character UUID, the
--    largest single CHECK on the transfer path. `length(id) BETWEEN 1 AND 64 AND id ~
--    '^[A-Za-z0-9_.:-]+$'` accepts exactly the same strings (every character is one ASCII byte
--    of the class, and there are 1 to 64 of them) with a one-state loop. `transfers.id` and
--    `transactions.id` keep a CHECK of that form under the same names; adding it scans each
--    table once (rows that passed the old rule pass the new one).

CREATE FUNCTION kassa_apply_balances(balances json) RETURNS bigint LANGUAGE plpgsql VOLATILE
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE accounts a SET debits_posted = x.dp, credits_posted = x.cp, debits_pending = x.dq,
                          credits_pending = x.cq
      FROM json_to_recordset(balances) AS x(t text, i text, dp bigint, cp bigint, dq bigint, cq bigint)
     WHERE a.tenant_id = x.t AND a.id = x.i;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION kassa_check_account_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (length(NEW.id) BETWEEN 1 AND 64 AND NEW.id ~ '^[A-Za-z0-9_.:-]+$') THEN
        RAISE EXCEPTION 'new row for relation "accounts" violates check constraint "accounts_id_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_id_check', TABLE = 'accounts';
    END IF;
    IF NOT NEW.currency ~ '^[A-Z]{3}$' THEN
        RAISE EXCEPTION 'new row for relation "accounts" violates check constraint "accounts_currency_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_currency_check', TABLE = 'accounts';
    END IF;
    RETURN NEW;
END $$;
-- Named to fire after `accounts_referenced_by_entries` (BEFORE triggers run in name order), the
-- only other BEFORE trigger, which never changes the row.
CREATE TRIGGER accounts_valid_key BEFORE INSERT OR UPDATE OF id, currency ON accounts
    FOR EACH ROW EXECUTE FUNCTION kassa_check_account_key();
ALTER TABLE accounts DROP CONSTRAINT accounts_id_check, DROP CONSTRAINT accounts_currency_check;

ALTER TABLE transfers DROP CONSTRAINT transfers_id_check,
    ADD CONSTRAINT transfers_id_check CHECK (length(id) BETWEEN 1 AND 64 AND id ~ '^[A-Za-z0-9_.:-]+$');
ALTER TABLE transactions DROP CONSTRAINT transactions_id_check,
    ADD CONSTRAINT transactions_id_check CHECK (length(id) BETWEEN 1 AND 64 AND id ~ '^[A-Za-z0-9_.:-]+$');

-- 0071: an account's id and currency are checked when they are written, not on every balance
-- update, and the id rule of transfers and transactions takes a cheap form of itself.
-- Why (docs/ledger-cost.md, "The write's cost per statement"): measured on the single-transfer
-- path (batches of 18 keyed transfers, the API's role), the batch's write statement cost about
-- 130 us of backend CPU per transfer; the regular expressions of these CHECKs were about 6 us of
-- it, and 20 expressions ran for each five-posting transaction.
-- (The balance update's plan, the other finding there, is fixed in the statement itself:
-- kassa/ledger/adapters/statements.py.)
-- 1. PostgreSQL evaluates every CHECK of a row on every UPDATE, so the two regular expressions on
--    `accounts.id` and `.currency` ran on each balance update (four per transfer, twenty per
--    five-posting transaction). The same rules, with the same error code (check_violation) and
--    constraint names, are now enforced by a trigger that fires on INSERT and on an UPDATE naming
--    `id` or `currency`, the only writes that can change them (balance updates never name them).
-- 2. The id rule `^[A-Za-z0-9_.:-]{1,64}$` is the costly form of itself: a bounded repetition
--    compiles to 64 copies of the character class, and the regex engine builds its DFA states
--    anew on every call (`miss`/`shortest` in a profile), about 6 us for a 36-character UUID, the
--    largest single CHECK on the transfer path. `length(id) BETWEEN 1 AND 64 AND id ~
--    '^[A-Za-z0-9_.:-]+$'` accepts exactly the same strings (every character is one ASCII byte
--    of the class, and there are 1 to 64 of them) with a one-state loop. `transfers.id` and
--    `transactions.id` keep a CHECK of that form under the same names; adding it scans each
--    table once (rows that passed the old rule pass the new one).

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

-- 0072: the two composite foreign keys of `transfers` to `accounts` become one check per
-- statement: a statement trigger refuses a new transfer whose (tenant, debit or credit account,
-- currency) is not an account, probing each distinct (account, currency) of the statement once.
-- Why (docs/ledger-cost.md, "The transfer's account checks per statement"): each foreign key is
-- an AFTER ROW trigger that runs its own query through SPI for every inserted row (two per
-- transfer, about 100 k of the backend's ~1,000 k instructions per keyed transfer in a batch of
-- 20), and its NO ACTION triggers on `accounts` are queued and tested on every balance update.
-- One query per statement does the same check for a batch (about 48 k per transfer).
--
-- What each guarantee of the foreign keys becomes (the same violations, the same SQLSTATE
-- `foreign_key_violation`):
-- - a new transfer names accounts that exist in its currency: `transfers_accounts_exist`, a
--   statement trigger over the inserted rows (this holds for a transfer row written alone, as
--   before; every transfer the engine writes also writes entries on both accounts in the same
--   statement, but the check does not rely on that);
-- - a transfer's accounts or currency changed to ones that are not an account:
--   `transfers_accounts_rekeyed`, a row trigger on UPDATE OF those columns only (the ledger
--   changes only status, posted amount and time, so it never fires on the write path);
-- - an account a transfer names is not deleted or re-keyed (was the keys' NO ACTION):
--   `accounts_referenced_by_entries` now also refuses when a transfer names the account (by the
--   indexes `transfers_by_debit`/`_credit`); it fires on DELETE and UPDATE OF tenant_id, id,
--   currency only, which the balance updates never name.
-- Unlike a foreign key the check does not take a KEY SHARE lock on the accounts: the engine
-- locks every account of a batch FOR UPDATE before it writes, so a concurrent DELETE waits for
-- the batch and then sees its transfers (as for the entries of transactions since 0070).
-- Existing rows satisfied the foreign keys, so they satisfy the triggers; nothing is rewritten.
-- The same check of a transaction's accounts in the journal's trigger (0070) is made a probe per
-- account (end of file).

ALTER TABLE transfers
    DROP CONSTRAINT transfers_tenant_id_debit_account_id_currency_fkey,
    DROP CONSTRAINT transfers_tenant_id_credit_account_id_currency_fkey;

CREATE FUNCTION kassa_check_transfer_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    -- UNION: each (account, currency) probed once; a batch names most accounts several times.
    -- OFFSET 0 keeps the probe a correlated subplan (see the end of this file).
    SELECT n.account_id INTO bad
      FROM (SELECT tenant_id, debit_account_id AS account_id, currency FROM new_transfers
            UNION SELECT tenant_id, credit_account_id, currency FROM new_transfers) n
     WHERE NOT EXISTS (SELECT FROM accounts a
                        WHERE a.tenant_id = n.tenant_id AND a.id = n.account_id AND a.currency = n.currency
                       OFFSET 0)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'a transfer names account %, which does not exist in its currency', bad
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER transfers_accounts_exist AFTER INSERT ON transfers
    REFERENCING NEW TABLE AS new_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_check_transfer_accounts();

CREATE FUNCTION kassa_check_rekeyed_transfer_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM accounts a
                    WHERE a.tenant_id = NEW.tenant_id AND a.id = NEW.debit_account_id AND a.currency = NEW.currency)
       OR NOT EXISTS (SELECT FROM accounts a
                       WHERE a.tenant_id = NEW.tenant_id AND a.id = NEW.credit_account_id AND a.currency = NEW.currency)
    THEN
        RAISE EXCEPTION 'transfer % names an account that does not exist in its currency', NEW.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER transfers_accounts_rekeyed BEFORE UPDATE OF tenant_id, debit_account_id, credit_account_id, currency
    ON transfers FOR EACH ROW EXECUTE FUNCTION kassa_check_rekeyed_transfer_accounts();

CREATE OR REPLACE FUNCTION kassa_refuse_referenced_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM entries e WHERE e.tenant_id = OLD.tenant_id AND e.account_id = OLD.id) THEN
        RAISE EXCEPTION 'account % has journal entries (% of its key refused)', OLD.id, TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT FROM transfers t WHERE t.tenant_id = OLD.tenant_id AND t.debit_account_id = OLD.id)
       OR EXISTS (SELECT FROM transfers t WHERE t.tenant_id = OLD.tenant_id AND t.credit_account_id = OLD.id) THEN
        RAISE EXCEPTION 'account % is named by transfers (% of its key refused)', OLD.id, TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;

-- The journal's check of a transaction's accounts (0070), with the same probe per (account,
-- currency): as a plain NOT EXISTS the planner made it a merge anti-join over an index scan of
-- every account of the tenant (row-level security's `tenant_id = ANY (<scope>)` is the only
-- condition it can scan by), cheaper on paper than forty probes for a tenant of 1,000 accounts
-- and linear in the tenant's size. `OFFSET 0` keeps the subquery a correlated subplan, one index
-- probe per distinct (account, currency) of the statement, whatever the statistics say.
CREATE OR REPLACE FUNCTION kassa_check_entries_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT coalesce(transfer_id, transaction_id) INTO bad
      FROM new_entries
     GROUP BY tenant_id, transfer_id, transaction_id, kind, currency
    HAVING sum(CASE side WHEN 'debit' THEN posted_amount ELSE -posted_amount END) <> 0
        OR sum(CASE side WHEN 'debit' THEN pending_amount ELSE -pending_amount END) <> 0
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'postings of transfer or transaction % do not balance', bad
            USING ERRCODE = 'check_violation';
    END IF;
    -- Each (account, currency) once: a batch names most of its accounts several times. A
    -- transfer's entries are covered by `transfers_accounts_exist` and are not probed again.
    SELECT e.account_id INTO bad
      FROM (SELECT DISTINCT tenant_id, account_id, currency FROM new_entries WHERE transaction_id IS NOT NULL) e
     WHERE NOT EXISTS (SELECT FROM accounts a
                        WHERE a.tenant_id = e.tenant_id AND a.id = e.account_id AND a.currency = e.currency
                       OFFSET 0)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'a posting names account %, which does not exist in its currency', bad
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

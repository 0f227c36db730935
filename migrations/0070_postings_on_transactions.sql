-- 0070: a multi-leg transaction's postings move from `transaction_postings` rows into arrays on
-- its `transactions` row; entries keep the transaction id and posting index and gain the
-- transaction's seq (for listing by account); the accounts a posting names are checked by the
-- journal's statement trigger instead of per-row foreign keys.
-- Why: a five-posting transaction cost the database about five transfers. In the write of 200
-- such transactions (64 ms of backend CPU) the 1,000 posting rows took 38 ms: a heap row, three
-- indexes and four foreign-key checks each (docs/ledger-cost.md). One row per transaction, one
-- partial index on the entries that are written anyway, and one set-based account check per
-- statement do the same work with none of those per-posting rows.
--
-- What each guarantee of the posting rows becomes:
-- - posting shape (amount > 0, 0 <= posted_amount <= amount, debit <> credit, no gaps): a CHECK
--   on the arrays (kassa_postings_valid), evaluated once per transaction row;
-- - a posting's accounts exist with its currency (were two composite FKs per posting): every
--   posting writes an entry on both of its accounts when its transaction is created, and the
--   journal's statement trigger refuses an entry of a transaction whose (account, currency) is
--   not an account, one anti-join per statement; and an account with entries can no longer be
--   deleted or change its id or currency (a trigger on those columns only, which the balance
--   updates never name), as the foreign keys refused;
-- - postings belong to their transaction (were two FKs): they are its row;
-- - listing a account's transactions newest first (were two posting indexes): the entries
--   written with a transaction carry its seq, indexed (partial) by (tenant, account, seq).
-- The balance check per transaction, kind and currency and the immutability of entries are
-- unchanged. On a large journal this migration holds `entries` against writes while it
-- back-fills the seq and builds the partial index (one scan of the table).

-- PL/pgSQL, not SQL: a SQL function with a subquery is never inlined, and ran as a query of its
-- own for every row (about 50 us); this loop of simple expressions costs a few.
CREATE FUNCTION kassa_postings_valid(
    debit_ids text[], credit_ids text[], currencies text[], amounts bigint[], posted bigint[]
) RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    n integer := cardinality(debit_ids);
BEGIN
    IF n < 1 OR array_ndims(debit_ids) <> 1 OR array_lower(debit_ids, 1) <> 1
       OR cardinality(credit_ids) <> n OR cardinality(currencies) <> n OR cardinality(amounts) <> n
       OR cardinality(posted) <> n
       OR array_lower(credit_ids, 1) <> 1 OR array_lower(currencies, 1) <> 1 OR array_lower(amounts, 1) <> 1
       OR array_lower(posted, 1) <> 1 THEN
        RETURN false;
    END IF;
    FOR i IN 1 .. n LOOP
        IF debit_ids[i] IS NULL OR credit_ids[i] IS NULL OR currencies[i] IS NULL OR amounts[i] IS NULL
           OR posted[i] IS NULL OR debit_ids[i] = credit_ids[i] OR amounts[i] <= 0 OR posted[i] < 0
           OR posted[i] > amounts[i] THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END $$;

ALTER TABLE transactions
    ADD COLUMN debit_account_ids  text[],
    ADD COLUMN credit_account_ids text[],
    ADD COLUMN currencies         text[],
    ADD COLUMN amounts            bigint[],
    ADD COLUMN posted_amounts     bigint[];

UPDATE transactions t
   SET debit_account_ids = p.d, credit_account_ids = p.c, currencies = p.cur, amounts = p.amt, posted_amounts = p.pa
  FROM (SELECT tenant_id, transaction_id,
               array_agg(debit_account_id ORDER BY posting_index) AS d,
               array_agg(credit_account_id ORDER BY posting_index) AS c,
               array_agg(currency ORDER BY posting_index) AS cur,
               array_agg(amount ORDER BY posting_index) AS amt,
               array_agg(posted_amount ORDER BY posting_index) AS pa,
               max(posting_index) + 1 = count(*) AS contiguous
          FROM transaction_postings GROUP BY tenant_id, transaction_id) p
 WHERE p.tenant_id = t.tenant_id AND p.transaction_id = t.id AND p.contiguous;

-- A transaction without postings, or with a gap in its indexes, cannot become an array: the
-- constraints below then fail the migration instead of renumbering postings entries point to.
ALTER TABLE transactions
    ALTER COLUMN debit_account_ids SET NOT NULL,
    ALTER COLUMN credit_account_ids SET NOT NULL,
    ALTER COLUMN currencies SET NOT NULL,
    ALTER COLUMN amounts SET NOT NULL,
    ALTER COLUMN posted_amounts SET NOT NULL,
    ADD CONSTRAINT transactions_postings_valid CHECK (
        kassa_postings_valid(debit_account_ids, credit_account_ids, currencies, amounts, posted_amounts)
    );

ALTER TABLE entries ADD COLUMN transaction_seq bigint;

-- The seq of the existing transactions on the entries written when each was created (same
-- timestamp: every entry of a batch carries the batch's time). A one-off schema change by the
-- owner: the immutability trigger, which guards the application's writes, is lifted for it alone.
ALTER TABLE entries DISABLE TRIGGER entries_immutable;
UPDATE entries e SET transaction_seq = t.seq
  FROM transactions t
 WHERE e.transaction_id IS NOT NULL AND t.tenant_id = e.tenant_id AND t.id = e.transaction_id
   AND e.created_at = t.created_at;
ALTER TABLE entries ENABLE TRIGGER entries_immutable;

ALTER TABLE entries ADD CONSTRAINT entries_seq_with_transaction CHECK (
    transaction_seq IS NULL OR transaction_id IS NOT NULL
);
CREATE INDEX entries_by_transaction ON entries (tenant_id, account_id, transaction_seq)
    WHERE transaction_seq IS NOT NULL;

DROP TABLE transaction_postings;

CREATE FUNCTION kassa_refuse_referenced_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM entries e WHERE e.tenant_id = OLD.tenant_id AND e.account_id = OLD.id) THEN
        RAISE EXCEPTION 'account % has journal entries (% of its key refused)', OLD.id, TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER accounts_referenced_by_entries BEFORE UPDATE OF tenant_id, id, currency OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_referenced_account_change();

-- Invariant 1 per transfer or transaction, kind and currency (as in 0013), and the accounts of a
-- transaction's entries (see above). A transfer's entries are covered by the transfer row's own
-- foreign keys and are not probed again.
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
    -- Each (account, currency) once: a batch names most of its accounts several times.
    SELECT e.account_id INTO bad
      FROM (SELECT DISTINCT tenant_id, account_id, currency FROM new_entries WHERE transaction_id IS NOT NULL) e
     WHERE NOT EXISTS (SELECT FROM accounts a
                        WHERE a.tenant_id = e.tenant_id AND a.id = e.account_id AND a.currency = e.currency)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'a posting names account %, which does not exist in its currency', bad
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

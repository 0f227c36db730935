-- 0013 multi-leg transactions: a transaction of 1..N postings applied (and posted, voided or
-- expired) as one; each currency of it balances on its own. Transfers keep their own table and
-- API unchanged; to the posting engine a transfer is the one-posting case.
-- Why the journal changes: an entry now belongs to a transfer (transfer_id) or to one posting
-- of a transaction (transaction_id, posting_index), never both, and the statement-level balance
-- check of 0006 becomes per transfer or transaction, kind and currency.
CREATE TABLE transactions (
    tenant_id      text NOT NULL,
    id             text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    status         text NOT NULL CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
    timeout_s      integer CHECK (timeout_s > 0),
    expires_at     timestamptz,
    reference      text CHECK (length(reference) <= 256),
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Fingerprint of the creating request, to tell an idempotent retry from an id reuse.
    request_hash   bytea NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, seq),
    CONSTRAINT transactions_pending_has_expiry CHECK ((timeout_s IS NULL) = (expires_at IS NULL))
);
CREATE INDEX transactions_pending_expiry ON transactions (expires_at) WHERE status = 'pending';

CREATE TABLE transaction_postings (
    tenant_id          text NOT NULL,
    transaction_id     text NOT NULL,
    posting_index      integer NOT NULL CHECK (posting_index >= 0),
    transaction_seq    bigint NOT NULL,  -- the transaction's seq, for account listings newest first
    debit_account_id   text NOT NULL,
    credit_account_id  text NOT NULL,
    currency           text NOT NULL,
    amount             bigint NOT NULL CHECK (amount > 0),
    posted_amount      bigint NOT NULL DEFAULT 0 CHECK (posted_amount >= 0 AND posted_amount <= amount),
    PRIMARY KEY (tenant_id, transaction_id, posting_index),
    CONSTRAINT transaction_postings_accounts_must_be_different CHECK (debit_account_id <> credit_account_id),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id),
    FOREIGN KEY (tenant_id, transaction_seq) REFERENCES transactions (tenant_id, seq),
    FOREIGN KEY (tenant_id, debit_account_id, currency) REFERENCES accounts (tenant_id, id, currency),
    FOREIGN KEY (tenant_id, credit_account_id, currency) REFERENCES accounts (tenant_id, id, currency)
);
CREATE INDEX transaction_postings_by_debit ON transaction_postings (tenant_id, debit_account_id, transaction_seq);
CREATE INDEX transaction_postings_by_credit ON transaction_postings (tenant_id, credit_account_id, transaction_seq);

-- Entries written before this migration all belong to transfers; the CHECK holds for them.
ALTER TABLE entries
    ALTER COLUMN transfer_id DROP NOT NULL,
    ADD COLUMN transaction_id text,
    ADD COLUMN posting_index integer CHECK (posting_index >= 0),
    ADD CONSTRAINT entries_one_source CHECK (
        (transfer_id IS NULL) <> (transaction_id IS NULL) AND (transaction_id IS NULL) = (posting_index IS NULL)
    );

-- Invariant 1 per transfer or transaction, kind and currency. A transfer's two entries share a
-- currency, so a transfer whose sides differed in currency would leave each currency's group
-- unbalanced and be refused as before.
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
    RETURN NULL;
END $$;

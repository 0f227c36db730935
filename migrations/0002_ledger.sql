-- 0002 ledger: accounts with materialized balances, transfers, and the append-only journal.
-- Why these constraints: the database is the last line of defence behind the domain checks.
-- Balances are four monotonic counters (as in TigerBeetle); the signed balance on the account's
-- normal side is derived, so the sum of (credits_posted - debits_posted) per currency is zero.
CREATE TABLE accounts (
    tenant_id        text NOT NULL REFERENCES tenants (id),
    id               text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    normal_balance   text NOT NULL CHECK (normal_balance IN ('credit', 'debit')),
    allow_negative   boolean NOT NULL DEFAULT false,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    debits_posted    bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted   bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending   bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending  bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    PRIMARY KEY (tenant_id, id),
    -- Target of the transfers' composite foreign keys: the database itself refuses a transfer
    -- whose currency differs from either account's.
    UNIQUE (tenant_id, id, currency),
    -- Invariant 2: available (posted minus pending outflows) never negative unless allowed.
    CONSTRAINT accounts_available_not_negative CHECK (
        allow_negative OR (
            CASE normal_balance
                WHEN 'credit' THEN credits_posted::numeric - debits_posted - debits_pending
                ELSE debits_posted::numeric - credits_posted - credits_pending
            END
        ) >= 0
    )
);

CREATE TABLE transfers (
    tenant_id          text NOT NULL,
    id                 text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    debit_account_id   text NOT NULL,
    credit_account_id  text NOT NULL,
    currency           text NOT NULL,
    amount             bigint NOT NULL CHECK (amount > 0),
    posted_amount      bigint NOT NULL DEFAULT 0 CHECK (posted_amount >= 0 AND posted_amount <= amount),
    status             text NOT NULL CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
    timeout_s          integer CHECK (timeout_s > 0),
    expires_at         timestamptz,
    reference          text CHECK (length(reference) <= 256),
    metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Fingerprint of the creating request, to tell an idempotent retry from an id reuse.
    request_hash       bytea NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT transfers_accounts_must_be_different CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT transfers_pending_has_expiry CHECK ((timeout_s IS NULL) = (expires_at IS NULL)),
    FOREIGN KEY (tenant_id, debit_account_id, currency) REFERENCES accounts (tenant_id, id, currency),
    FOREIGN KEY (tenant_id, credit_account_id, currency) REFERENCES accounts (tenant_id, id, currency)
);
CREATE INDEX transfers_by_seq ON transfers (tenant_id, seq);
CREATE INDEX transfers_by_debit ON transfers (tenant_id, debit_account_id, seq);
CREATE INDEX transfers_by_credit ON transfers (tenant_id, credit_account_id, seq);
CREATE INDEX transfers_pending_expiry ON transfers (expires_at) WHERE status = 'pending';

-- The journal: one entry per account per balance change, carrying the four counters after it,
-- so any historical balance is a single index lookup. Entries are never updated or deleted.
CREATE TABLE entries (
    tenant_id        text NOT NULL,
    account_id       text NOT NULL,
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    transfer_id      text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('pending', 'posted', 'voided', 'expired')),
    side             text NOT NULL CHECK (side IN ('debit', 'credit')),
    currency         text NOT NULL,
    posted_amount    bigint NOT NULL CHECK (posted_amount >= 0),
    pending_amount   bigint NOT NULL,
    debits_posted    bigint NOT NULL,
    credits_posted   bigint NOT NULL,
    debits_pending   bigint NOT NULL,
    credits_pending  bigint NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, account_id, seq)
);
CREATE INDEX entries_as_of ON entries (tenant_id, account_id, created_at);

CREATE FUNCTION kassa_refuse_journal_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal entries are immutable (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER entries_immutable BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_journal_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_refuse_journal_change();

-- Invariant 1 in the database: within every statement that writes entries, each transfer's
-- debit and credit sides move by the same posted and pending amounts. Entries of one transfer
-- change are always written by one statement, so a statement-level check sees both sides.
CREATE FUNCTION kassa_check_entries_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT transfer_id INTO bad
      FROM new_entries
     GROUP BY tenant_id, transfer_id, kind
    HAVING sum(CASE side WHEN 'debit' THEN posted_amount ELSE -posted_amount END) <> 0
        OR sum(CASE side WHEN 'debit' THEN pending_amount ELSE -pending_amount END) <> 0
        OR count(DISTINCT currency) <> 1
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'postings of transfer % do not balance', bad USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_balanced AFTER INSERT ON entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_check_entries_balance();

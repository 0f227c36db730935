-- 0045 compliance: KYC state per customer, limit usage counters, versioned monitoring rules,
-- the review queue, and the operator's sanctions list with each customer's screening.
-- Why here and not in the customers table: compliance is its own context (src/kassa/compliance);
-- it keys its rows by (tenant_id, customer_id) and reaches customers only through identity's
-- service functions, so neither context writes the other's tables.

-- KYC status, tier and the block a sanctions hit (or an operator) puts on a customer. The
-- capabilities are derived from these columns in code, never stored, so they cannot drift.
CREATE TABLE compliance_customers (
    tenant_id       text NOT NULL,
    customer_id     text NOT NULL,
    kyc_status      text NOT NULL DEFAULT 'unverified'
                    CHECK (kyc_status IN ('unverified', 'pending', 'verified', 'rejected')),
    tier            smallint NOT NULL DEFAULT 0 CHECK (tier BETWEEN 0 AND 2),
    requested_tier  smallint CHECK (requested_tier BETWEEN 1 AND 2),
    blocked         boolean NOT NULL DEFAULT false,
    blocked_reason  text CHECK (length(blocked_reason) <= 256),
    country         text CHECK (country ~ '^[A-Z]{2}$'),
    customer_since  timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id),
    CONSTRAINT compliance_customers_pending_asks_a_tier CHECK ((kyc_status = 'pending') = (requested_tier IS NOT NULL))
);

-- Day and month usage per customer, direction and currency. The money movement's own
-- transaction adds to these rows (row lock by upsert), so two concurrent payments serialize on
-- them and the second sees the first's usage. The CHECKs are the last line of defence behind
-- the code's conditional update; the maxima are the tier's at the time of the last payment.
CREATE TABLE compliance_limit_usage (
    tenant_id     text NOT NULL,
    customer_id   text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    currency      text NOT NULL,
    period        text NOT NULL CHECK (period IN ('day', 'month')),
    period_start  date NOT NULL,
    amount_used   bigint NOT NULL CHECK (amount_used >= 0),
    count_used    integer NOT NULL CHECK (count_used >= 0),
    amount_max    bigint NOT NULL,
    count_max     integer NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, direction, currency, period, period_start),
    CONSTRAINT compliance_limit_usage_amount_within_max CHECK (amount_used <= amount_max),
    CONSTRAINT compliance_limit_usage_count_within_max CHECK (count_used <= count_max)
);

-- Refuses the current statement's transaction naming the limit. Raised as a check_violation so
-- that the ledger batcher treats it like any product constraint: the coalesced batch is rolled
-- back and its jobs retried one by one, and only the job over the limit fails (with this error).
CREATE FUNCTION kassa_limit_exceeded(limit_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'limit exceeded: %', limit_name
        USING ERRCODE = 'check_violation', CONSTRAINT = 'kassa_limit:' || limit_name;
END
$$;

-- Monitoring rules, versioned: a change inserts a new version, old versions stay so that every
-- decision's rule_version can be read back.
CREATE TABLE compliance_rule_sets (
    tenant_id   text NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    rules       jsonb NOT NULL,
    changed_by  text NOT NULL,
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- Payments held for review: the money is a pending ledger transaction until a reviewer
-- approves (posted) or rejects (voided) it.
CREATE TABLE compliance_reviews (
    tenant_id       text NOT NULL,
    id              text NOT NULL,
    transaction_id  text NOT NULL,
    customer_id     text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'rejected')),
    rule_version    integer NOT NULL,
    rule_ids        text[] NOT NULL,
    created_at      timestamptz NOT NULL,
    decided_at      timestamptz,
    reviewer        text,
    reason          text CHECK (length(reason) <= 500),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, transaction_id),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id),
    CONSTRAINT compliance_reviews_decision_complete CHECK (
        (status = 'open') = (decided_at IS NULL) AND (status = 'open') = (reviewer IS NULL)
        AND (status = 'open') = (reason IS NULL)
    )
);
CREATE INDEX compliance_reviews_open ON compliance_reviews (tenant_id, created_at) WHERE status = 'open';

-- The operator's sanctions list (OpenSanctions CSV), shared by every tenant: not tenant data.
-- Each load is a new version; entries of older versions are deleted by the load.
CREATE TABLE sanctions_lists (
    version      integer PRIMARY KEY,
    source       text NOT NULL,
    entry_count  integer NOT NULL CHECK (entry_count >= 0),
    loaded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sanctions_entries (
    list_version  integer NOT NULL REFERENCES sanctions_lists (version) ON DELETE CASCADE,
    entry_id      text NOT NULL,
    schema        text NOT NULL,
    name          text NOT NULL,
    aliases       text[] NOT NULL DEFAULT '{}',
    countries     text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (list_version, entry_id)
);

-- The latest screening of each customer; a hit is what operators look at (and what blocks).
CREATE TABLE compliance_screenings (
    tenant_id     text NOT NULL,
    customer_id   text NOT NULL,
    list_version  integer NOT NULL,
    status        text NOT NULL CHECK (status IN ('clear', 'hit')),
    matches       jsonb NOT NULL DEFAULT '[]'::jsonb,
    screened_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

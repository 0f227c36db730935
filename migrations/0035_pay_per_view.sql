-- 0035 pay-per-view: catalogue content, purchases (with the price and split they used),
-- entitlements, and refunds.
-- Why: a purchase is one multi-leg ledger transaction written together with its purchase row,
-- its entitlement and its event (kassa.payments.purchases). The constraints back the domain's
-- rules: one active entitlement per customer and content (two concurrent purchases of the same
-- content cannot both charge), refunds numbered per purchase (two refunds computed from the
-- same state cannot both commit) and never above the price.
CREATE TABLE content (
    tenant_id         text NOT NULL REFERENCES tenants (id),
    id                text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('video', 'live_stream', 'podcast', 'article')),
    title             text NOT NULL,
    prices            jsonb NOT NULL,
    rights_holders    jsonb NOT NULL,
    platform_fee_bps  integer NOT NULL CHECK (platform_fee_bps BETWEEN 0 AND 10000),
    platform_fee_min  bigint NOT NULL DEFAULT 0 CHECK (platform_fee_min >= 0),
    access            jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE purchases (
    tenant_id         text NOT NULL,
    id                text NOT NULL,
    customer_id       text NOT NULL,
    content_id        text NOT NULL,
    currency          text NOT NULL,
    price             bigint NOT NULL CHECK (price > 0),
    platform_fee_bps  integer NOT NULL,
    platform_fee_min  bigint NOT NULL,
    wallet_account_id text NOT NULL,
    -- [{role, customer_id, account_id, amount}], fee first: the split this sale used, forever.
    legs              jsonb NOT NULL,
    transaction_id    text NOT NULL,
    refunded_amount   bigint NOT NULL DEFAULT 0,
    refunded_legs     jsonb NOT NULL,  -- what refunds took back per leg, in the order of legs
    refund_count      integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, content_id) REFERENCES content (tenant_id, id),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id),
    CONSTRAINT purchases_refund_within_price CHECK (refunded_amount BETWEEN 0 AND price)
);
CREATE INDEX purchases_by_customer ON purchases (tenant_id, customer_id, created_at DESC, id);
CREATE INDEX purchases_by_content ON purchases (tenant_id, content_id);

CREATE TABLE entitlements (
    tenant_id      text NOT NULL,
    id             text NOT NULL,
    customer_id    text NOT NULL,
    content_id     text NOT NULL,
    purchase_id    text NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'expired', 'revoked')),
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz,
    -- A from-first-play window: its length, fixed into ends_at at the first play.
    play_duration_s integer CHECK (play_duration_s > 0),
    first_used_at  timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, purchase_id),
    FOREIGN KEY (tenant_id, purchase_id) REFERENCES purchases (tenant_id, id)
);
-- The check's lookup, and the rule that refuses a second charge for content already owned.
CREATE UNIQUE INDEX entitlements_one_active ON entitlements (tenant_id, customer_id, content_id)
    WHERE status = 'active';
CREATE INDEX entitlements_by_customer ON entitlements (tenant_id, customer_id, created_at DESC, id);

CREATE TABLE refunds (
    tenant_id       text NOT NULL,
    id              text NOT NULL,
    purchase_id     text NOT NULL,
    seq             integer NOT NULL CHECK (seq > 0),
    amount          bigint NOT NULL CHECK (amount > 0),
    refund_fee      boolean NOT NULL,
    reason          text NOT NULL,
    legs            jsonb NOT NULL,
    transaction_id  text NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT refunds_purchase_seq UNIQUE (tenant_id, purchase_id, seq),
    FOREIGN KEY (tenant_id, purchase_id) REFERENCES purchases (tenant_id, id),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id)
);

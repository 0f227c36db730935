-- 0031 top-ups and withdrawals through a payment provider, the provider callbacks received, and
-- the exceptions an operator must look at.
-- Why: money enters a wallet by a card charge (top-up) and leaves it by a payout (withdrawal);
-- both are answered asynchronously by the provider. Each row is written in the ledger's own
-- transaction (a ProductWrite) with the pending ledger transaction that holds its money, and
-- its status changes in the transaction that posts or voids it, so a row's status and its
-- money never disagree.
--
-- Only the last four digits of a card or account number are stored.
-- provider_callbacks keys a delivery by (event id, signature timestamp): a provider re-signs
-- every redelivery, so the same pair again is a replay of captured bytes (refused), while the
-- same event with a new timestamp is a duplicate delivery (a no-op).

CREATE TABLE topups (
    tenant_id           text NOT NULL REFERENCES tenants (id),
    id                  text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,52}$'),
    wallet_id           text NOT NULL,
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    provider            text NOT NULL,
    transaction_id      text NOT NULL,
    card_last4          text NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    status              text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure_code        text CHECK (length(failure_code) <= 64),
    provider_object_id  text CHECK (length(provider_object_id) <= 128),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, transaction_id),
    FOREIGN KEY (tenant_id, wallet_id) REFERENCES wallets (tenant_id, id)
);

CREATE TABLE withdrawals (
    tenant_id           text NOT NULL REFERENCES tenants (id),
    id                  text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,52}$'),
    wallet_id           text NOT NULL,
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    provider            text NOT NULL,
    transaction_id      text NOT NULL,
    -- The transaction that credited the wallet back after a return that came after the post.
    return_transaction_id text,
    destination_last4   text NOT NULL CHECK (destination_last4 ~ '^[A-Z0-9]{4}$'),
    status              text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'returned')),
    failure_code        text CHECK (length(failure_code) <= 64),
    provider_object_id  text CHECK (length(provider_object_id) <= 128),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, transaction_id),
    FOREIGN KEY (tenant_id, wallet_id) REFERENCES wallets (tenant_id, id)
);

CREATE TABLE provider_callbacks (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    provider     text NOT NULL,
    event_id     text NOT NULL CHECK (length(event_id) <= 128),
    signed_at    bigint NOT NULL,
    type         text NOT NULL,
    reference    text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('applied', 'duplicate', 'stale', 'exception')),
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider, event_id, signed_at)
);

CREATE TABLE payment_exceptions (
    tenant_id          text NOT NULL REFERENCES tenants (id),
    id                 text NOT NULL,
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    provider           text NOT NULL,
    object_type        text NOT NULL CHECK (object_type IN ('topup', 'withdrawal')),
    object_id          text NOT NULL,
    event_id           text NOT NULL,
    event_type         text NOT NULL,
    status_at_arrival  text NOT NULL,
    failure_code       text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX payment_exceptions_by_seq ON payment_exceptions (tenant_id, seq);

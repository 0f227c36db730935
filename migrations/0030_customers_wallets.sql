-- 0030 customers (identity context) and wallets (payments context), and the per-tenant data
-- keys that seal customers' personal data.
-- Why: live-event commerce (issue 8) needs customers who hold wallets; a wallet is a row here
-- plus a credit-normal ledger account `wallet:<wallet id>` created through the ledger's API.
--
-- Personal data (name, email) is never stored in plaintext: the application seals each value
-- with AES-256-GCM under its tenant's data key (kassa.shared.crypto, version byte 1), and the
-- data key itself is stored here wrapped by the master key (KASSA_MASTER_KEY_FILE). Erasing a
-- tenant's row of tenant_data_keys makes all its sealed personal data unreadable at once.
-- Customer ids are at most 52 characters (customer_id_chars_max) so that the rights holder's
-- ledger account `payable:<customer id>:<CUR>` still fits the 64-character account id.

CREATE TABLE tenant_data_keys (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    wrapped_key  bytea NOT NULL CHECK (get_byte(wrapped_key, 0) = 1),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);

CREATE TABLE customers (
    tenant_id     text NOT NULL REFERENCES tenants (id),
    id            text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,52}$'),
    type          text NOT NULL CHECK (type IN ('person', 'business')),
    name_sealed   bytea NOT NULL CHECK (get_byte(name_sealed, 0) = 1 AND octet_length(name_sealed) >= 37),
    email_sealed  bytea CHECK (get_byte(email_sealed, 0) = 1 AND octet_length(email_sealed) >= 37),
    country       text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE wallets (
    tenant_id    text NOT NULL,
    id           text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,52}$'),
    customer_id  text NOT NULL,
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    account_id   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    -- One wallet per customer and currency (the API's 409 wallet_exists is this constraint).
    UNIQUE (tenant_id, customer_id, currency),
    UNIQUE (tenant_id, account_id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
);

-- 0001 identity: tenants and API keys.
-- Why: every row in kassa belongs to a tenant; API keys are stored only as SHA-256 hashes of
-- high-entropy secrets (they are not passwords, so a slow KDF would only cost latency).
CREATE TABLE tenants (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    tenant_id    text REFERENCES tenants (id),
    role         text NOT NULL CHECK (role IN ('admin', 'tenant')),
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    -- An admin key belongs to no tenant; a tenant key always to exactly one.
    CONSTRAINT api_keys_role_scope CHECK ((role = 'admin') = (tenant_id IS NULL))
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Idempotency-Key records, scoped per tenant ('_admin' for admin requests). A row is claimed
-- ('in_flight') in the same transaction as the effect and completed with the response, so a
-- crash can never leave an effect without its record or a record without its effect.
CREATE TABLE idempotency_keys (
    tenant_id        text NOT NULL,
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash     bytea NOT NULL,
    response_status  integer,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- 0005 notifications: webhook endpoints, their deliveries and every delivery attempt, and the
-- per-account notification log. All of it is written by consumers of the event stream, never
-- by the money path, so a slow or failing receiver cannot slow a transfer down.
-- Limits mirrored here (url length, event type count) are named in kassa/shared/limits.py.

CREATE TABLE webhook_endpoints (
    tenant_id                   text NOT NULL REFERENCES tenants (id),
    id                          text NOT NULL,
    seq                         bigint GENERATED ALWAYS AS IDENTITY,
    url                         text NOT NULL CHECK (length(url) <= 2048 AND url ~ '^https?://'),
    event_types                 text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 50),
    -- Secrets are stored as they are: HMAC signing needs the key itself, not a hash of it.
    secret                      text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    -- After a rotation the previous secret keeps signing (alongside the new one) until it expires,
    -- so receivers can switch secrets without dropping a delivery.
    previous_secret             text CHECK (previous_secret LIKE 'whsec\_%'),
    previous_secret_expires_at  timestamptz,
    created_at                  timestamptz NOT NULL,
    updated_at                  timestamptz NOT NULL,
    -- Soft delete: the delivery history stays for audit; pending deliveries are canceled.
    deleted_at                  timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT webhook_endpoints_previous_secret_expires
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (tenant_id, seq) WHERE deleted_at IS NULL;

-- One row per (endpoint, event): the unique key makes the fan-out idempotent even if the
-- consumer's inbox were bypassed. The payload is the exact envelope JSON that gets signed.
CREATE TABLE webhook_deliveries (
    tenant_id         text NOT NULL,
    id                text NOT NULL,
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    endpoint_id       text NOT NULL,
    event_id          text NOT NULL,
    event_type        text NOT NULL,
    payload           bytea NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'dead', 'canceled')),
    attempt_count     integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    -- While pending: when a worker may next claim it (a claim pushes it out by the lease).
    next_attempt_at   timestamptz NOT NULL,
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    completed_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, endpoint_id, event_id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id),
    CONSTRAINT webhook_deliveries_completed CHECK ((status = 'pending') = (completed_at IS NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (tenant_id, endpoint_id, seq);

-- Every HTTP attempt, successful or not; never updated.
CREATE TABLE webhook_attempts (
    tenant_id          text NOT NULL,
    delivery_id        text NOT NULL,
    attempt_no         integer NOT NULL CHECK (attempt_no >= 1),
    started_at         timestamptz NOT NULL,
    duration_ms        integer NOT NULL CHECK (duration_ms >= 0),
    status_code        integer,
    error              text,
    response_excerpt   text,
    outcome            text NOT NULL CHECK (outcome IN ('succeeded', 'retry', 'failed', 'dead')),
    PRIMARY KEY (tenant_id, delivery_id, attempt_no),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id)
);

-- The in-app notification log. No foreign key to accounts: the ledger owns that table and
-- this context only hears about accounts through events.
CREATE TABLE notifications (
    tenant_id    text NOT NULL,
    account_id   text NOT NULL,
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    id           text NOT NULL,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    message      text NOT NULL CHECK (length(message) <= 500),
    data         jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, account_id, seq),
    UNIQUE (tenant_id, id),
    -- Backstop for exactly-once: one notification per account per event, whatever the inbox did.
    UNIQUE (tenant_id, account_id, event_id)
);

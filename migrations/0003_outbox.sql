-- 0003 outbox: domain events written in the same transaction as the change they describe
-- (invariant 5). The relay publishes rows in seq order and marks them published.
CREATE TABLE outbox (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              uuid NOT NULL UNIQUE,
    tenant_id       text NOT NULL,
    type            text NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    trace_id        text,
    data            jsonb NOT NULL,
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

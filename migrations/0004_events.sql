-- 0004 events: the consumers' inbox and dead letters, and an index for replays from a time.
-- Why: a consumer's effect and its inbox row commit in one transaction, so a redelivered event
-- (relay retry, broker redelivery, operator replay) finds the row and changes nothing.
-- The relay needs no table of its own: it holds a session advisory lock as its lease and the
-- outbox's published_at is its progress (published rows stay as the replay history).
CREATE TABLE event_inbox (
    tenant_id     text NOT NULL,
    consumer      text NOT NULL CHECK (length(consumer) BETWEEN 1 AND 100),
    event_id      uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consumer, event_id)
);

-- Events a consumer failed on consumer_attempts_max times (or could not decode). `payload` is
-- the message as received, so a replay hands the handler exactly what it got the first time.
CREATE TABLE event_dead_letters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer     text NOT NULL,
    event_id     uuid,          -- NULL when the payload is not a decodable envelope
    tenant_id    text,
    event_type   text,
    payload      bytea NOT NULL,
    error        text NOT NULL,
    attempts     integer NOT NULL CHECK (attempts >= 1),
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz
);
-- One open dead letter per consumer and event: a redelivery of an event that is already
-- dead-lettered (the ack was lost) must not file it twice.
CREATE UNIQUE INDEX event_dead_letters_open ON event_dead_letters (consumer, event_id)
    WHERE replayed_at IS NULL AND event_id IS NOT NULL;
CREATE INDEX event_dead_letters_pending ON event_dead_letters (id) WHERE replayed_at IS NULL;

-- `kassa events replay --from <time>` scans the outbox history by time.
CREATE INDEX outbox_occurred_at ON outbox (occurred_at);

-- 0017 event batches: the relay publishes several outbox rows as one broker message (a batch),
-- and consumers record how far they got instead of one inbox row per event.
-- Why: one message and one inbox row per event made the worker role cost about as much CPU as
-- the API per transfer. A batch is recorded here *before* it is published (numbered without
-- gaps under the relay lease, with the SHA-256 of the exact message bytes), so that
--   * a relay that dies between publishing and marking republishes the very same message
--     under the very same broker deduplication id (stream id + batch number);
--   * consumers accept a message only if its digest matches the recorded batch: nothing
--     published to the broker by anyone else can become a webhook or a notification
--     (invariant 7), whatever the broker's own authentication;
--   * a consumer that missed a batch (broker data lost, concurrent worker) reads it back from
--     the outbox instead of skipping it.

-- One row: identifies this database's event stream in broker message ids, so that two kassa
-- databases sharing one broker never deduplicate or consume each other's batches.
CREATE TABLE event_stream (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO event_stream DEFAULT VALUES;

CREATE TABLE relay_batches (
    batch_no      bigint PRIMARY KEY CHECK (batch_no >= 1),
    seq_min       bigint NOT NULL,
    seq_max       bigint NOT NULL CHECK (seq_max >= seq_min),
    event_count   integer NOT NULL CHECK (event_count >= 1),
    digest        bytea NOT NULL CHECK (length(digest) = 32),
    -- The exact rows of a batch while it is in flight (needed to rebuild it after a crash);
    -- cleared once published, when outbox.batch_no says the same thing.
    seqs          bigint[],
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    CONSTRAINT relay_batches_in_flight CHECK ((published_at IS NULL) = (seqs IS NOT NULL))
);
CREATE INDEX relay_batches_in_flight ON relay_batches (batch_no) WHERE published_at IS NULL;

-- Which batch carried each published row (set by the same UPDATE that sets published_at).
ALTER TABLE outbox ADD COLUMN batch_no bigint;

-- A consumer has applied (or dead-lettered) every event of batches 1..batch_no, and none after.
-- Updated in the transaction of the effects, so effect and position commit together.
CREATE TABLE event_consumer_positions (
    consumer    text PRIMARY KEY CHECK (length(consumer) BETWEEN 1 AND 100),
    batch_no    bigint NOT NULL DEFAULT 0 CHECK (batch_no >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- When each consumer applied each batch (one row per batch, not per event): commit-to-effect
-- delays and consumer progress for operators and `make bench`, written with the position.
CREATE TABLE event_consumer_batches (
    consumer    text NOT NULL,
    batch_no    bigint NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, batch_no)
);

-- The per-event inbox is replaced by the positions above.
DROP TABLE event_inbox;

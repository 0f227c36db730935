-- 0020 outbox.traceparent: the W3C trace context of the span that wrote the event.
-- Why: an outbox row is published and consumed long after (and in another process than) the
-- request that caused it; carrying its `traceparent` in the envelope lets the relay, the
-- consumers and the webhook delivery continue the request's trace. Nullable: NULL when tracing
-- is off, and for rows written before this migration.
ALTER TABLE outbox ADD COLUMN traceparent text;

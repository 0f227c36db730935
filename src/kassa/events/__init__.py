"""Domain events: envelope, transactional outbox, relay, bus adapters, inbox and DLQ."""

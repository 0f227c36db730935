"""Domain events: envelope, transactional outbox, relay, batch messages, bus adapters, consumer positions and DLQ."""

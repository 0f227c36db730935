"""Fixtures for the event backbone (NATS JetStream, Kafka-protocol broker). Owned by events work."""

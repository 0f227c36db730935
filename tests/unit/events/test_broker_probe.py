"""The readiness probe finds the broker's servers in NATS URLs and Kafka bootstrap lists, and
reports an unconfigured broker as such rather than as down."""

from __future__ import annotations

from kassa.events.bus import probe


def test_nats_urls_with_credentials_and_several_servers() -> None:
    assert probe._nats_servers("nats://user:secret@10.0.0.1:4223, nats://nats-2") == [
        ("10.0.0.1", 4223),
        ("nats-2", 4222),
    ]
    assert probe._nats_servers("127.0.0.1:5555") == [("127.0.0.1", 5555)]


def test_kafka_bootstrap_lists() -> None:
    assert probe._kafka_servers("b-1.msk:9098,[::1]:9092, bad") == [("b-1.msk", 9098), ("::1", 9092)]


async def test_no_broker_settings_is_not_configured() -> None:
    assert await probe.probe(None, None) == "not_configured"

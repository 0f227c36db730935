"""Publishing keeps each key's events in order, pipelines across keys, and names things safely."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from kassa.events.bus import create_bus
from kassa.events.bus.base import publish_in_key_order
from kassa.events.bus.kafka import KafkaBus
from kassa.events.bus.nats import durable_name, subject_for, subject_token
from kassa.events.envelope import Envelope
from kassa.events.errors import EventBusUnavailable
from kassa.settings import Settings


def _event(key: str, n: int, tenant: str = "t1") -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type="TransferPosted",
        version=1,
        occurred_at=datetime.now(UTC),
        tenant_id=tenant,
        trace_id=None,
        data={"n": n},
        aggregate_type="transfer",
        aggregate_id=key,
    )


async def test_a_key_waits_for_the_ack_of_its_previous_event_while_other_keys_proceed() -> None:
    in_flight: dict[str, int] = {}
    order: list[tuple[str, int]] = []
    concurrent_keys_max = 0

    async def publish_one(event: Envelope) -> None:
        nonlocal concurrent_keys_max
        key = event.aggregate_id
        assert in_flight.get(key, 0) == 0, "two events of one key in flight"
        in_flight[key] = 1
        concurrent_keys_max = max(concurrent_keys_max, sum(in_flight.values()))
        await asyncio.sleep(0.001)
        order.append((key, event.data["n"]))
        in_flight[key] = 0

    events = [_event(k, n) for n in range(5) for k in ("a", "b", "c")]
    await publish_in_key_order(events, publish_one)
    for key in "abc":
        assert [n for k, n in order if k == key] == list(range(5))
    assert concurrent_keys_max == 3


async def test_a_failed_publish_fails_the_batch_after_the_other_keys_finish() -> None:
    done: list[str] = []

    async def publish_one(event: Envelope) -> None:
        if event.aggregate_id == "bad":
            raise EventBusUnavailable("down")
        done.append(event.aggregate_id)

    with pytest.raises(EventBusUnavailable):
        await publish_in_key_order([_event("bad", 0), _event("ok", 0), _event("bad", 1)], publish_one)
    assert done == ["ok"]


def test_subjects_escape_what_nats_tokens_cannot_hold() -> None:
    assert subject_token("acme.eu*>% x") == "acme%2Eeu%2A%3E%25%20x"
    assert subject_for(_event("k", 0, tenant="a.b")) == "kassa.events.TransferPosted.a%2Eb"
    assert durable_name("web.hooks") == "kassa-web_hooks"


def _settings(nats_url: str | None = None, kafka_bootstrap: str | None = None) -> Settings:
    return dataclasses.replace(Settings.from_env(), nats_url=nats_url, kafka_bootstrap=kafka_bootstrap)


def test_the_factory_picks_kafka_only_when_asked_and_keeps_it_idempotent() -> None:
    bus = create_bus(_settings(kafka_bootstrap="127.0.0.1:1"))
    assert isinstance(bus, KafkaBus) and bus.idempotent
    assert type(create_bus(_settings(nats_url="nats://127.0.0.1:1"))).__name__ == "NatsBus"
    with pytest.raises(EventBusUnavailable):
        create_bus(_settings())

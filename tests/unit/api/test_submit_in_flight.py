"""`submit` refuses a second concurrent request with the same Idempotency-Key in this process
(409, counted like the ledger's errors), lets the same key through again once the first ended,
however it ended, and never releases a key it did not take."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kassa.api.routing import Ctx
from kassa.api.submit import submit
from kassa.identity.domain.model import Principal
from kassa.ledger import TransferNotFound, VoidPending
from kassa.observability import metrics
from kassa.shared.errors import IdempotencyKeyInFlight


class Ledger:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0

    async def execute(self, command: object, **_: Any) -> object:
        self.calls += 1
        await self.gate.wait()
        raise TransferNotFound("the ledger's own refusal")


VOID = VoidPending("ten-1", "t-1")


def ctx(services: Any, key: str | None) -> Ctx:
    request: Any = SimpleNamespace(scope={"method": "POST", "path": "/v1/transfers/t-1/void"})
    principal = Principal(key_id="k", role="tenant", tenant_id="ten-1")
    return Ctx(request, services, principal, b"", key)


def refused_in_flight() -> float:
    labels = {"product": "transfer", "outcome": "idempotency_key_in_flight"}
    return REGISTRY.get_sample_value("kassa_transactions_total", labels) or 0.0


async def test_a_concurrent_duplicate_is_refused_and_the_key_is_free_again_after() -> None:
    ledger = Ledger()
    services = SimpleNamespace(ledger=ledger, inflight_keys=set())
    before = refused_in_flight()
    first = asyncio.create_task(submit(ctx(services, "key-1"), VOID, b"", 200, "transfer"))
    await asyncio.sleep(0)
    assert services.inflight_keys == {("ten-1", "key-1")}
    with pytest.raises(IdempotencyKeyInFlight):
        await submit(ctx(services, "key-1"), VOID, b"", 200, "transfer")
    assert services.inflight_keys == {("ten-1", "key-1")}  # the refused one did not release it
    assert ledger.calls == 1
    other = asyncio.create_task(submit(ctx(services, "key-2"), VOID, b"", 200, "transfer"))
    await asyncio.sleep(0)
    assert services.inflight_keys == {("ten-1", "key-1"), ("ten-1", "key-2")}
    ledger.gate.set()
    for task in (first, other):
        with pytest.raises(TransferNotFound):
            await task
    assert services.inflight_keys == set()  # released on the ledger's error too
    metrics.flush()
    assert refused_in_flight() == before + 1
    with pytest.raises(TransferNotFound):  # the same key goes through again
        await submit(ctx(services, "key-1"), VOID, b"", 200, "transfer")
    assert ledger.calls == 3 and services.inflight_keys == set()


async def test_a_request_without_a_key_takes_none() -> None:
    ledger = Ledger()
    ledger.gate.set()
    services = SimpleNamespace(ledger=ledger, inflight_keys=set())
    with pytest.raises(TransferNotFound):
        await submit(ctx(services, None), VOID, b"", 200, "transfer")
    assert services.inflight_keys == set()

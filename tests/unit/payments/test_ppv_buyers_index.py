"""The buyers index answers "no entitlement" only when no purchase can be missing from it."""

from __future__ import annotations

import asyncio

from kassa.payments.adapters.ppv_rows import cache_key
from kassa.payments.entitlement_buyers import BuyersIndex


def key(customer: str) -> str:
    return cache_key("t", customer, "final")


async def test_a_purchase_notified_while_the_buyers_are_read_is_never_lost() -> None:
    release = asyncio.Event()

    async def load(tenant: str, content: str, at_most: int) -> list[str]:
        await release.wait()
        return ["ann"]  # read before "dan" committed

    index = BuyersIndex(buyers_max=10)
    index.attach(load)
    assert index.lacks(key("bob")) is False  # unknown yet: ask the database (and start reading)
    index.noticed(key("dan"))  # dan's purchase committed after the read's snapshot
    release.set()
    await index.idle()
    assert index.known("t", "final")
    assert [index.lacks(key(c)) for c in ("ann", "dan", "bob")] == [False, False, True]
    index.noticed(key("bob"))
    assert index.lacks(key("bob")) is False


async def test_a_content_with_more_buyers_than_the_bound_is_not_used() -> None:
    async def load(tenant: str, content: str, at_most: int) -> list[str]:
        return [f"c{n}" for n in range(at_most)]

    index = BuyersIndex(buyers_max=3)
    index.attach(load)
    index.lacks(key("x"))
    await index.idle()
    assert not index.known("t", "final") and index.lacks(key("x")) is False


async def test_what_a_read_returns_after_the_index_was_cleared_is_dropped() -> None:
    release = asyncio.Event()

    async def load(tenant: str, content: str, at_most: int) -> list[str]:
        await release.wait()
        return []

    index = BuyersIndex()
    index.attach(load)
    index.lacks(key("x"))
    index.clear()  # the listener was lost: notifications may have been missed
    release.set()
    await index.idle()
    assert not index.known("t", "final") and index.lacks(key("x")) is False


async def test_the_buyers_are_read_again_after_the_ttl() -> None:
    reads: list[int] = []

    async def load(tenant: str, content: str, at_most: int) -> list[str]:
        reads.append(1)
        return []

    index = BuyersIndex(ttl_s=0.0)
    index.attach(load)
    index.lacks(key("x"))
    await index.idle()
    assert index.lacks(key("x")) is False  # older than the TTL: not used, read again
    await index.idle()
    assert len(reads) == 2

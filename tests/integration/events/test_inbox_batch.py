"""A fetched batch applies in one transaction: each event once, all or nothing on failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from kassa.events.inbox import apply_batch
from support.events import RecordingHandler, effects, envelope, new_tenant

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_a_batch_applies_each_event_once_even_when_it_repeats_inside_the_batch(
    pool: Pool, effects_table: str
) -> None:
    tenant = new_tenant()
    events = [envelope(tenant, "k", n) for n in range(3)]
    handler = RecordingHandler(tenant)
    ran = await apply_batch(pool, handler, [events[0], events[1], events[0], events[2]])
    assert ran == [True, True, False, True]
    again = await apply_batch(pool, handler, events)
    assert again == [False, False, False]
    assert sorted(e for _, e in await effects(pool, handler.name)) == sorted(e.id for e in events)


async def test_a_failing_handler_rolls_back_the_whole_batch_inbox_rows_included(pool: Pool, effects_table: str) -> None:
    tenant = new_tenant()
    events = [envelope(tenant, "k", n) for n in range(3)]
    handler = RecordingHandler(tenant, broken_ids={events[2].id})
    with pytest.raises(RuntimeError):
        await apply_batch(pool, handler, events)
    assert await effects(pool, handler.name) == []
    healthy = RecordingHandler(tenant)
    healthy.name = handler.name  # same consumer, now working: nothing was claimed by the failed batch
    assert await apply_batch(pool, healthy, events) == [True, True, True]

"""`kassa events replay` brings one consumer up to date from the outbox; its position keeps effects exactly-once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from kassa.cli.main import main as kassa
from kassa.events.dlq import file_dead_letter
from kassa.events.relay import drain
from kassa.events.replay import replay_history
from support.events import RecordingHandler, effects, nats_bus, new_tenant, write_outbox

if TYPE_CHECKING:
    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_replay_applies_missed_events_once_and_a_second_replay_changes_nothing(
    pool: Pool, nats_server: EmbeddedNats, effects_table: str
) -> None:
    bus = await nats_bus(nats_server.url)
    try:
        tenant = new_tenant()
        since = datetime.now(UTC) - timedelta(seconds=1)
        ids = await write_outbox(pool, tenant, ["a", "b"], per_key=3)
        await drain(pool, bus)
    finally:
        await bus.close()
    handler = RecordingHandler(tenant)
    first = await replay_history(pool, handler, since)
    assert first.outcomes.get("applied", 0) >= len(ids)
    assert [e for _, e in await effects(pool, handler.name)] == ids  # history order is commit order
    second = await replay_history(pool, handler, since)
    assert second.outcomes.get("applied", 0) == 0 and second.outcomes.get("duplicate", 0) >= len(ids)
    later = await replay_history(pool, handler, datetime.now(UTC) + timedelta(hours=1))
    assert later.seen == 0
    assert len(await effects(pool, handler.name)) == len(ids)


async def test_operators_list_dead_letters_and_get_a_typed_error_for_unknown_consumers(
    pool: Pool, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    consumer = f"cli-{new_tenant()}"
    await file_dead_letter(pool, consumer, b"not json", "undecodable envelope", 1, None)
    monkeypatch.setenv("KASSA_DATABASE_URL", pg_url)
    # The CLI runs its own event loop; run it in a thread so that it does not nest in ours.
    import asyncio

    assert await asyncio.to_thread(kassa, ["events", "dlq", "list", "--consumer", consumer]) == 0
    assert '"error":"undecodable envelope"' in capsys.readouterr().out
    code = await asyncio.to_thread(
        kassa, ["events", "replay", "--from", "2026-01-01T00:00:00Z", "--consumer", "no-such-consumer"]
    )
    assert code == 1
    assert "consumer_not_found" in capsys.readouterr().err


async def test_after_a_replay_the_stream_copies_of_the_replayed_batches_change_nothing(
    pool: Pool, nats_server: EmbeddedNats, effects_table: str
) -> None:
    from support.events import consume_until, publish_outbox

    bus = await nats_bus(nats_server.url)
    try:
        tenant = new_tenant()
        since = datetime.now(UTC) - timedelta(seconds=1)
        ids, _ = await publish_outbox(pool, bus, tenant, ["a", "b"], per_key=2)
        handler = RecordingHandler(tenant)
        replayed = await replay_history(pool, handler, since)
        assert replayed.seen >= len(ids) and replayed.outcomes.get("duplicate", 0) == 0
        more, _ = await publish_outbox(pool, bus, tenant, ["a"], per_key=1)
        # The live consumer then reads the whole stream: the replayed batches are duplicates,
        # the later one is applied, each event exactly once and in commit order.
        got = await consume_until(pool, bus, handler, len(ids) + len(more))
        assert [e for _, e in got] == ids + more
    finally:
        await bus.close()

"""A ledger process SIGKILLed mid-batch leaves every purchase with both its postings and its rows, or neither."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.ledger import assert_tenant_ledger_consistent
from support.product import open_shop

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.chaos
WORKER = Path(__file__).resolve().parents[1] / "support" / "product_worker.py"
BUYERS = [f"buyer{n}" for n in range(8)]
CLIENTS = 40
ACKS_BEFORE_KILL = 300
# 80 purchases of 100 per buyer: after that the buyer is refused (insufficient_funds).
FUNDS = 8_000


def start_worker(database_url: str, tenant: str, first: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), database_url, tenant, str(CLIENTS), str(first)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches it and nothing else
    )


def reap(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group if it still runs, wait for it, and close its pipes."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    for pipe in (process.stdin, process.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


async def read_until(process: subprocess.Popen[bytes], acks: int) -> tuple[set[str], dict[str, str]]:
    """Read answers until `acks` purchases are acknowledged (or the process ends)."""
    assert process.stdout is not None
    acked: set[str] = set()
    refused: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    while len(acked) < acks:
        line = (await loop.run_in_executor(None, process.stdout.readline)).decode().split()
        if not line or line[0] == "done":
            break
        if line[0] == "ack":
            acked.add(line[1])
        elif line[0] == "refused":
            refused[line[1]] = line[2]
    return acked, refused


async def both_or_neither(pool: Pool, tenant: str) -> tuple[set[str], set[str]]:
    """Purchase ids with rows, and purchase ids with a transaction; the two must be equal."""
    rows = {r["id"] for r in await pool.fetch("SELECT id FROM test_purchases WHERE tenant_id = $1", tenant)}
    moved = {
        r["id"].removeprefix("purchase-")
        for r in await pool.fetch("SELECT id FROM transactions WHERE tenant_id = $1", tenant)
    }
    assert rows == moved, f"rows without money: {rows - moved}; money without rows: {moved - rows}"
    return rows, moved


async def test_a_sigkilled_ledger_process_leaves_each_purchase_with_postings_and_rows_or_neither(
    app_url: str, pool: Pool
) -> None:
    tenant = await open_shop(pool, dict.fromkeys(BUYERS, FUNDS))
    worker = start_worker(app_url, tenant, 0)
    try:
        acked, refused = await asyncio.wait_for(read_until(worker, ACKS_BEFORE_KILL), 120)
        os.killpg(worker.pid, signal.SIGKILL)  # mid-load: purchases are queued, in batches, and in flight
        worker.wait(30)
    finally:
        reap(worker)
    assert len(acked) == ACKS_BEFORE_KILL
    rows, _ = await both_or_neither(pool, tenant)
    assert acked <= rows, f"{len(acked - rows)} acknowledged purchases lost"
    assert not rows & set(refused), "a refused purchase left rows behind"
    in_doubt = rows - acked  # committed, but the answer died with the process
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)

    # After a restart, retrying every purchase the first process may have started (by the same
    # transaction id) completes the missing ones and never writes a purchase twice.
    highest = max(int(i.removeprefix("p")) for i in acked | rows | set(refused))
    retried = [f"p{n}" for n in range(highest + CLIENTS) if f"p{n}" not in acked and f"p{n}" not in refused]
    again = start_worker(app_url, tenant, -1)
    assert again.stdin is not None
    again.stdin.write("".join(f"{i}\n" for i in retried).encode())
    again.stdin.close()
    try:
        acked_again, refused_again = await asyncio.wait_for(read_until(again, len(retried) + 1), 120)
        assert again.wait(60) == 0
    finally:
        reap(again)
    assert set(retried) == acked_again | set(refused_again)
    assert in_doubt <= acked_again, "a purchase committed before the kill is acknowledged on retry"
    rows_after, _ = await both_or_neither(pool, tenant)
    assert rows_after == acked | acked_again
    assert await pool.fetchval("SELECT count(*) FROM test_purchases WHERE tenant_id = $1", tenant) == len(rows_after)
    assert all(code == "insufficient_funds" for code in (*refused.values(), *refused_again.values()))
    async with pool.acquire() as conn:
        accounts = {a.id: a.balance for a in await assert_tenant_ledger_consistent(conn, tenant)}
    assert accounts["fee"].credits_posted == 15 * len(rows_after)

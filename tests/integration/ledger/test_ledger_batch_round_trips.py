"""A coalesced batch talks to PostgreSQL four times (begin with its scope, reserve and lock, write, COMMIT) and keeps
its rows out of the statements' text; keys and rows reach the database exactly, whatever they contain; a write that
touched other rows than the engine expected aborts its transaction."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from test_ledger_engine_key_records import keyed, records, render
from test_ledger_journal_and_constraints import tenant_with_accounts

from kassa.ledger.adapters import pipeline
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.domain.posting import Applied
from kassa.shared.invariants import InvariantViolation
from kassa.store import idempotency
from kassa.store.idempotency import IdemClaim

if TYPE_CHECKING:
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration

HASH = hashlib.sha256(b"the request").digest()


async def logged_round_trips(conn: Conn, jobs: list[Job]) -> tuple[list[Any], list[str]]:
    """Run the batch on `conn` and return its results and the SQL of every round trip it made."""
    sent: list[str] = []

    def log(query: Any) -> None:
        sent.append(query.query)

    conn.add_query_logger(log)
    try:
        results = await run_batch(conn, jobs)
    finally:
        conn.remove_query_logger(log)
    return results, sent


async def test_a_batch_of_new_keyed_transfers_makes_four_round_trips_with_no_value_in_their_text(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    async with pool.acquire() as conn:
        await run_batch(conn, [keyed(tenant, str(uuid.uuid4()), "t-warm")])  # asyncpg's own first Parse
        jobs = [keyed(tenant, str(uuid.uuid4()), f"t-{n}", credit=("alice", "bob")[n % 2]) for n in range(6)]
        results, sent = await logged_round_trips(conn, jobs)
    assert all(isinstance(r, Applied) for r in results), results
    assert len(sent) == 4, [s[:80] for s in sent]
    assert sent[0].startswith("BEGIN; SET LOCAL enable_seqscan = off; SELECT set_config('kassa.tenant_id', ")
    assert "pg_try_advisory_xact_lock" in sent[1] and "FOR UPDATE OF a" in sent[1]
    assert "INSERT INTO idempotency_keys" in sent[2] and sent[3] == "COMMIT"
    # Every value travels as a bound parameter: no key, id or body in any statement's text (which
    # tracing records and pg_stat_activity shows).
    assert not [s for s in sent for job in jobs if job.claim is not None and job.claim.key in s]
    assert not [s for s in sent if "t-0" in s]
    assert set((await records(pool, tenant)).values()) == {
        (201, msgspec.json.encode({"id": f"t-{n}"})) for n in ("warm", *range(6))
    }


async def test_a_batch_naming_its_transfer_ids_locks_them_first_and_makes_six(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    named = CreateTransfer(tenant, "t-named", "bank", "alice", "USD", 5, False, None, None, {}, HASH)
    async with pool.acquire() as conn:
        results, sent = await logged_round_trips(conn, [Job(named, IdemClaim(tenant, str(uuid.uuid4()), HASH), render)])
    assert isinstance(results[0], Applied)
    # begin + scope, reserve, lock the named transfer, lock the accounts, write, COMMIT
    assert len(sent) == 6, [s[:80] for s in sent]
    assert "FROM transfers t" in sent[2] and "FROM accounts a" in sent[3] and sent[5] == "COMMIT"


@pytest.mark.parametrize(
    "text",
    [
        "it's",
        "back\\slash\\",
        "\\x00ff",
        "'); DELETE FROM transfers; --",
        "$1 $$ $tag$ :name %s",
        "E'\\'' || '",
        'quote " and \\" and \\\\"',
        "naïve 日本語 😀 \u2028",
    ],
)
async def test_the_write_arguments_reach_the_database_exactly(pool: Pool, text: str) -> None:
    tenant = await tenant_with_accounts(pool)
    key = f"key {text}"
    command = CreateTransfer(
        tenant, f"t-{uuid.uuid4().hex}", "bank", "alice", "USD", 5, False, None, text, {text: [text, 1]}, HASH, True
    )
    async with pool.acquire() as conn:
        (applied,) = await run_batch(conn, [Job(command, IdemClaim(tenant, key, HASH), render)])
    assert isinstance(applied, Applied)
    row = await pool.fetchrow(
        "SELECT reference, metadata FROM transfers WHERE tenant_id = $1 AND id = $2", tenant, command.id
    )
    assert row is not None and row["reference"] == text and row["metadata"] == {text: [text, 1]}
    assert await records(pool, tenant) == {key: (201, msgspec.json.encode({"id": command.id}))}
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant) == 1


def test_the_scope_literal_never_ends_its_string_early() -> None:
    assert pipeline.quoted("a'b\\c") == "E'a''b\\\\c'"
    assert pipeline.begin_sql(["t'1", "t2"]) == (
        "BEGIN; SET LOCAL enable_seqscan = off; SELECT set_config('kassa.tenant_id', E't''1,t2', true)"
    )
    with pytest.raises(InvariantViolation):
        pipeline.quoted("nul\x00")


async def test_a_tenant_whose_id_needs_quoting_is_scoped_exactly(pool: Pool) -> None:
    tenant = f"it's-{uuid.uuid4().hex[:8]}\\"
    async with pool.acquire() as conn:
        async with pipeline.transaction(conn, [tenant]):
            assert await conn.fetchval("SELECT current_setting('kassa.tenant_id')") == tenant
        assert not conn.is_in_transaction()


async def test_a_write_touching_other_rows_than_expected_aborts_its_transaction(pool: Pool) -> None:
    tenant, key = await tenant_with_accounts(pool), str(uuid.uuid4())
    rows = idempotency.record_rows([(IdemClaim(tenant, key, HASH), 201, b"{}")])
    wrong = pipeline.Write(idempotency.RECORD_WRITE, rows, {"idempotency_keys": 2})  # it inserts one
    async with pool.acquire() as conn:
        with pytest.raises(InvariantViolation, match="touched exactly the rows"):
            async with pipeline.transaction(conn, [tenant]):
                await wrong.run(conn)
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT 1") == 1, "the connection is usable after the rollback"
    assert await records(pool, tenant) == {}

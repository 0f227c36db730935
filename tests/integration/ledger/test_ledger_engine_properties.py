"""Random transfer and multi-leg command sequences on PostgreSQL match the pure engine and keep every invariant."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kassa.ledger.adapters import queries
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import (
    Account,
    Balance,
    Command,
    CreateTransaction,
    CreateTransfer,
    ExpirePending,
    ExpireTransaction,
    NewPosting,
    NormalBalance,
    PostPending,
    PostTransaction,
    Transaction,
    Transfer,
    VoidPending,
    VoidTransaction,
)
from kassa.ledger.domain.posting import Applied, Posting, TransactionApplied
from kassa.shared.errors import KassaError
from support.ledger import AccountState, assert_balanced, assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from kassa.store.pool import Pool

ACCOUNTS: tuple[tuple[str, str, NormalBalance, bool], ...] = (
    ("bank", "USD", "debit", True),
    ("equity", "USD", "credit", True),
    ("alice", "USD", "credit", False),
    ("bob", "USD", "credit", False),
    ("receivable", "USD", "debit", False),
    ("jpy.bank", "JPY", "debit", True),
    ("jpy.alice", "JPY", "credit", False),
)
NAMES = [a[0] for a in ACCOUNTS]
TRANSFER_IDS = [f"t{i}" for i in range(8)]
FAR = datetime(2000, 1, 1, tzinfo=UTC)  # holds here time out in an hour: only explicit commands change them

creates = st.builds(
    lambda d, c, cur, amount, pending, tid: ("create", d, c, cur, amount, pending, tid),
    st.sampled_from(NAMES),
    st.sampled_from([*NAMES, "ghost"]),
    st.sampled_from(["USD", "USD", "JPY"]),
    st.integers(1, 300),
    st.booleans(),
    st.sampled_from(TRANSFER_IDS),
)
changes = st.tuples(
    st.sampled_from(["post", "void", "expire"]), st.sampled_from(TRANSFER_IDS), st.none() | st.integers(1, 300)
)
TRANSACTION_IDS = [f"x{i}" for i in range(6)]
# Mostly postings that can pay (from an account allowed to go negative, within one currency),
# sometimes any pair of names in any currency.
PAYING_LEGS = [
    (d, c, cur) for d, cur, _, neg in ACCOUNTS if neg for c, other, _, _ in ACCOUNTS if other == cur and c != d
]
raw_leg = st.tuples(st.sampled_from(NAMES), st.sampled_from([*NAMES, "ghost"]), st.sampled_from(["USD", "USD", "JPY"]))
legs = st.lists(st.sampled_from(PAYING_LEGS) | st.sampled_from(PAYING_LEGS) | raw_leg, min_size=1, max_size=4)
transactions = st.builds(
    lambda ls, amount, pending, tid: ("tx", tuple(ls), amount, pending, tid),
    legs,
    st.integers(1, 300),
    st.booleans(),
    st.sampled_from(TRANSACTION_IDS),
)
transaction_changes = st.tuples(
    st.sampled_from(["tx-post", "tx-void", "tx-expire"]),
    st.sampled_from(TRANSACTION_IDS),
    st.none() | st.lists(st.integers(0, 300), min_size=1, max_size=4).map(tuple),
)
operations = st.lists(
    st.one_of(creates, creates, changes, transactions, transactions, transaction_changes), min_size=1, max_size=30
)


def command(tenant: str, op: tuple[Any, ...]) -> Command:
    """Decode one generated operation; its fields are read by position, as each strategy builds them."""
    if op[0] == "tx":
        _, ls, amount, pending, tid = op
        postings = tuple(NewPosting(d, c, int(amount), cur) for d, c, cur in ls)
        fingerprint = hashlib.sha256(repr(op).encode()).digest()
        return CreateTransaction(
            tenant, str(tid), postings, bool(pending), 3600 if pending else None, None, {}, fingerprint
        )
    if str(op[0]).startswith("tx-"):
        kind, tid, amounts = op
        if kind == "tx-post":
            return PostTransaction(tenant, str(tid), amounts)
        return VoidTransaction(tenant, str(tid)) if kind == "tx-void" else ExpireTransaction(tenant, str(tid))
    if op[0] == "create":
        _, debit, credit, currency, amount, pending, tid = op
        fingerprint = hashlib.sha256(repr(op).encode()).digest()
        return CreateTransfer(
            tenant,
            str(tid),
            str(debit),
            str(credit),
            str(currency),
            int(amount),
            bool(pending),
            3600 if pending else None,
            None,
            {},
            fingerprint,
        )
    kind, tid, amount = op
    if kind == "post":
        return PostPending(tenant, str(tid), amount)
    return VoidPending(tenant, str(tid)) if kind == "void" else ExpirePending(tenant, str(tid))


def summary(result: object) -> tuple[object, ...]:
    if isinstance(result, KassaError):
        return ("error", result.code)
    if isinstance(result, TransactionApplied):
        t = result.transaction
        return ("ok", result.created, t.status, tuple(p.posted_amount for p in t.postings))
    assert isinstance(result, Applied)
    return ("ok", result.created, result.transfer.status, result.transfer.posted_amount)


async def new_tenant_with_accounts(pool: Pool) -> str:
    tenant = f"prop-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'property test')", tenant)
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, $3, $4, $5)",
            [(tenant, *spec) for spec in ACCOUNTS],
        )
    return tenant


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(ops=operations, cuts=st.lists(st.integers(1, 30), max_size=10), atomic=st.lists(st.booleans(), max_size=10))
# Always run one sequence that applies, partly posts, voids and re-uses multi-leg transactions
# (in one batch and across batches), whatever the random examples reach.
@example(
    ops=[
        ("tx", (("bank", "alice", "USD"), ("jpy.bank", "jpy.alice", "JPY")), 50, False, "x0"),
        ("tx", (("bank", "alice", "USD"), ("equity", "bob", "USD")), 40, True, "x1"),
        ("tx-post", "x1", (10, 0)),
        ("tx", (("alice", "bob", "USD"), ("bob", "receivable", "USD")), 30, True, "x2"),
        ("tx-void", "x2", None),
        ("tx", (("bank", "alice", "USD"),), 50, False, "x0"),
        ("tx", (("alice", "bob", "USD"),), 999, False, "x3"),
    ],
    cuts=[2, 4],
    atomic=[False, False, True],
)
async def test_random_batches_on_postgresql_match_the_pure_engine_and_keep_the_invariants(
    pool: Pool, ops: list[tuple[object, ...]], cuts: list[int], atomic: list[bool]
) -> None:
    tenant = await new_tenant_with_accounts(pool)
    commands = [command(tenant, op) for op in ops]
    boundaries = sorted({0, len(commands), *(c for c in cuts if c < len(commands))})
    batches = [commands[a:b] for a, b in itertools.pairwise(boundaries)]

    twin_accounts = {(tenant, n): Account(tenant, n, cur, nb, neg, Balance()) for n, cur, nb, neg in ACCOUNTS}
    twin_transfers: dict[tuple[str, str], Transfer] = {}
    twin_transactions: dict[tuple[str, str], Transaction] = {}
    for index, batch in enumerate(batches):
        is_atomic = atomic[index] if index < len(atomic) else False
        saved = (
            {k: a.balance.copy() for k, a in twin_accounts.items()},
            dict(twin_transfers),
            dict(twin_transactions),
        )
        posting = Posting(twin_accounts, twin_transfers, FAR, twin_transactions)
        expected = [summary(posting.apply(c)) for c in batch]
        if is_atomic and any(e[0] == "error" for e in expected):
            for key, balance in saved[0].items():
                twin_accounts[key].balance = balance
            twin_transfers.clear()
            twin_transfers.update(saved[1])
            twin_transactions.clear()
            twin_transactions.update(saved[2])
            expected = [e if e[0] == "error" else ("error", "batch_failed") for e in expected]
        async with pool.acquire() as conn:
            got = [summary(r) for r in await run_batch(conn, [Job(c) for c in batch], atomic=is_atomic)]
        assert got == expected, (batch, got, expected)

    async with pool.acquire() as conn:
        stored = await assert_tenant_ledger_consistent(conn, tenant)
        rows = await conn.fetch("SELECT id, status, posted_amount FROM transfers WHERE tenant_id = $1", tenant)
    assert {s.id: s.balance for s in stored} == {k[1]: a.balance for k, a in twin_accounts.items()}
    assert {r["id"]: (r["status"], r["posted_amount"]) for r in rows} == {
        k[1]: (t.status, t.posted_amount) for k, t in twin_transfers.items()
    }
    async with pool.acquire() as conn:
        stored_transactions = {t.id: t for _, t in await queries.list_transactions(conn, tenant, None, None, 100)}
    assert {i: (t.status, [p.posted_amount for p in t.postings]) for i, t in stored_transactions.items()} == {
        k[1]: (t.status, [p.posted_amount for p in t.postings]) for k, t in twin_transactions.items()
    }

    assert_balanced(
        AccountState(a.id, a.currency, a.normal_balance, a.allow_negative, a.balance) for a in twin_accounts.values()
    )

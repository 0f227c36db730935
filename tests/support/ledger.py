"""Ledger invariants shared by the unit, integration, e2e and chaos tests (plain helpers, no fixtures).

The three invariants of the ledger, checked the same way everywhere:
  1. per currency, the sum of (credits_posted - debits_posted) is zero, and pending debits equal
     pending credits;
  2. no account with allow_negative=false has a negative available balance;
  3. replaying the journal (entries in order, per account) reproduces every account's counters,
     and every entry carries the counters after it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kassa.events.envelope import Envelope
from kassa.ledger.domain.model import Balance

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kassa.store.pool import Conn, Pool


@dataclass(frozen=True, slots=True)
class AccountState:
    id: str
    currency: str
    normal_balance: str
    allow_negative: bool
    balance: Balance


@dataclass(frozen=True, slots=True)
class EntryLine:
    account_id: str
    side: str
    posted_amount: int
    pending_amount: int
    after: Balance


def assert_balanced(accounts: Iterable[AccountState]) -> None:
    posted: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    for account in accounts:
        posted[account.currency] += account.balance.credits_posted - account.balance.debits_posted
        pending[account.currency] += account.balance.credits_pending - account.balance.debits_pending
    assert {c: s for c, s in posted.items() if s} == {}, f"posted sums are not zero: {dict(posted)}"
    assert {c: s for c, s in pending.items() if s} == {}, f"pending sums are not zero: {dict(pending)}"


def available(balance: Balance, normal_balance: str) -> int:
    """Posted minus pending outflows on the account's normal side (computed here, independently
    of the code under test)."""
    if normal_balance == "credit":
        return balance.credits_posted - balance.debits_posted - balance.debits_pending
    return balance.debits_posted - balance.credits_posted - balance.credits_pending


def assert_never_overdrawn(accounts: Iterable[AccountState]) -> None:
    for account in accounts:
        if not account.allow_negative:
            left = available(account.balance, account.normal_balance)
            assert left >= 0, f"{account.id} is overdrawn: available {left}"


def assert_journal_replays(accounts: Iterable[AccountState], entries: Iterable[EntryLine]) -> None:
    """`entries` in journal order; each account's replay must match its `after` and final counters."""
    replayed: dict[str, Balance] = defaultdict(Balance)
    for entry in entries:
        balance = replayed[entry.account_id]
        if entry.side == "debit":
            balance.debits_posted += entry.posted_amount
            balance.debits_pending += entry.pending_amount
        else:
            balance.credits_posted += entry.posted_amount
            balance.credits_pending += entry.pending_amount
        assert balance == entry.after, f"entry of {entry.account_id} says {entry.after}, replay gives {balance}"
    for account in accounts:
        assert replayed[account.id] == account.balance, f"{account.id}: journal replay differs from balance"


def assert_ledger_invariants(accounts: list[AccountState], entries: list[EntryLine]) -> None:
    assert_balanced(accounts)
    assert_never_overdrawn(accounts)
    assert_journal_replays(accounts, entries)


def _balance(row: Any) -> Balance:
    return Balance(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])


async def load_tenant_ledger(conn: Conn, tenant_id: str) -> tuple[list[AccountState], list[EntryLine]]:
    """A tenant's accounts and journal as stored. Entries of one account are applied in `seq`
    order: the account's row lock makes a later transaction allocate later sequence numbers."""
    accounts = [
        AccountState(r["id"], r["currency"], r["normal_balance"], r["allow_negative"], _balance(r))
        for r in await conn.fetch(
            "SELECT id, currency, normal_balance, allow_negative, debits_posted, credits_posted,"
            " debits_pending, credits_pending FROM accounts WHERE tenant_id = $1",
            tenant_id,
        )
    ]
    entries = [
        EntryLine(r["account_id"], r["side"], r["posted_amount"], r["pending_amount"], _balance(r))
        for r in await conn.fetch(
            "SELECT account_id, side, posted_amount, pending_amount, debits_posted, credits_posted,"
            " debits_pending, credits_pending FROM entries WHERE tenant_id = $1 ORDER BY seq",
            tenant_id,
        )
    ]
    return accounts, entries


async def assert_tenant_ledger_consistent(conn: Conn, tenant_id: str) -> list[AccountState]:
    accounts, entries = await load_tenant_ledger(conn, tenant_id)
    assert_ledger_invariants(accounts, entries)
    return accounts


async def outbox_envelopes(pool: Pool, tenant_id: str) -> list[Envelope]:
    """A tenant's outbox rows as the envelopes the relay publishes, in commit order."""
    rows = await pool.fetch(
        "SELECT id, type, version, occurred_at, tenant_id, trace_id, data, aggregate_type, aggregate_id"
        " FROM outbox WHERE tenant_id = $1 ORDER BY seq",
        tenant_id,
    )
    return [
        Envelope(
            id=str(r["id"]),
            type=r["type"],
            version=r["version"],
            occurred_at=r["occurred_at"],
            tenant_id=r["tenant_id"],
            trace_id=r["trace_id"],
            data=r["data"],
            aggregate_type=r["aggregate_type"],
            aggregate_id=r["aggregate_id"],
        )
        for r in rows
    ]

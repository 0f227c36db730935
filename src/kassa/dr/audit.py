"""What the drill checks on a recovered database: the ledger invariants, read independently of
the ledger's own code, and which transfers survived.

  1. per currency, posted credits minus posted debits sum to zero, and pending debits equal
     pending credits;
  2. no account that does not allow negative has a negative available balance;
  3. replaying the journal in order reproduces every entry's "after" counters and every
     account's balances;
  4. every transfer has its event in the outbox (invariant 5 of ARCHITECTURE.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kassa.store.tenancy import scope

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kassa.store.pool import Pool

Counters = tuple[int, int, int, int]  # debits_posted, credits_posted, debits_pending, credits_pending
_VIOLATIONS_LISTED_MAX = 20


@dataclass
class LedgerSnapshot:
    balances: dict[str, Counters]
    accounts: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    transfers: dict[str, dict[str, Any]]
    transfers_without_event: list[str]
    violations: list[str] = field(default_factory=list)


def _counters(row: Any) -> Counters:
    return (row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])


async def snapshot(pool: Pool, tenant_id: str) -> LedgerSnapshot:
    """One consistent read (a repeatable-read transaction) of a tenant's ledger."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await scope(conn, [tenant_id])
        accounts = [
            dict(r)
            for r in await conn.fetch(
                "SELECT id, currency, normal_balance, allow_negative, debits_posted, credits_posted,"
                " debits_pending, credits_pending FROM accounts WHERE tenant_id = $1",
                tenant_id,
            )
        ]
        entries = [
            dict(r)
            for r in await conn.fetch(
                "SELECT account_id, side, posted_amount, pending_amount, debits_posted, credits_posted,"
                " debits_pending, credits_pending FROM entries WHERE tenant_id = $1 ORDER BY seq",
                tenant_id,
            )
        ]
        transfers = {
            r["id"]: dict(r)
            for r in await conn.fetch(
                "SELECT id, debit_account_id, credit_account_id, amount, posted_amount, status"
                " FROM transfers WHERE tenant_id = $1",
                tenant_id,
            )
        }
        missing_events = await conn.fetch(
            "SELECT t.id FROM transfers t WHERE t.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM outbox o"
            " WHERE o.tenant_id = t.tenant_id AND o.aggregate_id = t.id AND o.type LIKE 'Transfer%')",
            tenant_id,
        )
    found = LedgerSnapshot(
        balances={a["id"]: _counters(a) for a in accounts},
        accounts=accounts,
        entries=entries,
        transfers=transfers,
        transfers_without_event=[r["id"] for r in missing_events],
    )
    found.violations = ledger_violations(found)
    return found


async def unpublished_events(pool: Pool, tenant_id: str) -> int:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await scope(conn, [tenant_id])
        count: int = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE tenant_id = $1 AND published_at IS NULL", tenant_id
        )
        return count


def ledger_violations(found: LedgerSnapshot) -> list[str]:
    """Every broken invariant, in words (an empty list when the ledger is sound)."""
    problems = [*_sum_violations(found.accounts), *_overdrafts(found.accounts)]
    problems += _replay_violations(found.accounts, found.entries)
    problems += [f"transfer {t} has no event in the outbox" for t in found.transfers_without_event]
    return problems[:_VIOLATIONS_LISTED_MAX]


def _sum_violations(accounts: Iterable[dict[str, Any]]) -> list[str]:
    posted: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    for a in accounts:
        posted[a["currency"]] += a["credits_posted"] - a["debits_posted"]
        pending[a["currency"]] += a["credits_pending"] - a["debits_pending"]
    out = [f"posted balances of {c} sum to {s}, not 0" for c, s in posted.items() if s]
    return out + [f"pending balances of {c} sum to {s}, not 0" for c, s in pending.items() if s]


def _overdrafts(accounts: Iterable[dict[str, Any]]) -> list[str]:
    out = []
    for a in accounts:
        if a["allow_negative"]:
            continue
        if a["normal_balance"] == "credit":
            available = a["credits_posted"] - a["debits_posted"] - a["debits_pending"]
        else:
            available = a["debits_posted"] - a["credits_posted"] - a["credits_pending"]
        if available < 0:
            out.append(f"account {a['id']} is overdrawn: available {available}")
    return out


def _replay_violations(accounts: Iterable[dict[str, Any]], entries: Iterable[dict[str, Any]]) -> list[str]:
    replayed: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    out = []
    for e in entries:
        counters = replayed[e["account_id"]]
        offset = 0 if e["side"] == "debit" else 1
        counters[offset] += e["posted_amount"]
        counters[offset + 2] += e["pending_amount"]
        if tuple(counters) != _counters(e):
            out.append(f"an entry of {e['account_id']} says {_counters(e)}, the replay gives {tuple(counters)}")
    for a in accounts:
        if tuple(replayed[a["id"]]) != _counters(a):
            out.append(f"account {a['id']} holds {_counters(a)}, its journal replays to {tuple(replayed[a['id']])}")
    return out


def expected_balances(funding: Iterable[dict[str, Any]], transfers: Iterable[dict[str, Any]]) -> dict[str, Counters]:
    """Posted counters per account implied by a set of posted transfer requests (the client's
    own record of what it was told), to compare with a restored database."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for body in [*funding, *transfers]:
        out[body["debit_account_id"]][0] += body["amount"]
        out[body["credit_account_id"]][1] += body["amount"]
    return {k: (v[0], v[1], v[2], v[3]) for k, v in out.items()}


def balance_mismatches(found: dict[str, Counters], expected: dict[str, Counters]) -> list[str]:
    out = []
    for account in sorted(set(found) | set(expected)):
        have, want = found.get(account, (0, 0, 0, 0)), expected.get(account, (0, 0, 0, 0))
        if have != want:
            out.append(f"account {account} holds {have}, the acknowledged transfers make {want}")
    return out[:_VIOLATIONS_LISTED_MAX]


__all__ = [
    "LedgerSnapshot",
    "balance_mismatches",
    "expected_balances",
    "ledger_violations",
    "snapshot",
    "unpublished_events",
]

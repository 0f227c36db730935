"""The drill's own checks can fail: a broken ledger is reported in words, and lost acknowledged
transfers are counted with the time they span (kassa.dr.audit and kassa.dr.report, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kassa.dr.audit import LedgerSnapshot, balance_mismatches, expected_balances, ledger_violations
from kassa.dr.load import Ack, TransferLoad
from kassa.dr.report import failover_section, verdict

KILL = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def account(id: str, dp: int, cp: int, allow_negative: bool = False, normal: str = "credit") -> dict[str, object]:
    return {
        "id": id,
        "currency": "EUR",
        "normal_balance": normal,
        "allow_negative": allow_negative,
        "debits_posted": dp,
        "credits_posted": cp,
        "debits_pending": 0,
        "credits_pending": 0,
    }


def entry(account_id: str, side: str, amount: int, after: tuple[int, int]) -> dict[str, object]:
    dp, cp = after
    return {
        "account_id": account_id,
        "side": side,
        "posted_amount": amount,
        "pending_amount": 0,
        "debits_posted": dp,
        "credits_posted": cp,
        "debits_pending": 0,
        "credits_pending": 0,
    }


def snapshot(accounts: list[dict[str, object]], entries: list[dict[str, object]]) -> LedgerSnapshot:
    return LedgerSnapshot({}, accounts, entries, {}, [])


def test_a_sound_ledger_has_no_violations() -> None:
    accounts = [account("bank", 100, 0, allow_negative=True, normal="debit"), account("w", 0, 100)]
    entries = [entry("bank", "debit", 100, (100, 0)), entry("w", "credit", 100, (0, 100))]
    assert ledger_violations(snapshot(accounts, entries)) == []


def test_unbalanced_overdrawn_and_unreplayable_ledgers_are_each_reported() -> None:
    accounts = [account("bank", 100, 0, allow_negative=True, normal="debit"), account("w", 30, 0)]
    entries = [entry("bank", "debit", 100, (100, 0)), entry("w", "debit", 30, (0, 30))]
    found = snapshot(accounts, entries)
    found.transfers_without_event = ["t1"]
    problems = ledger_violations(found)
    assert any("sum to -130" in p for p in problems)
    assert any("w is overdrawn" in p for p in problems)
    assert any("the replay gives" in p for p in problems)
    assert any("t1 has no event" in p for p in problems)


def test_balances_implied_by_acknowledged_transfers() -> None:
    funding = [{"debit_account_id": "bank", "credit_account_id": "a", "amount": 100}]
    moves = [{"debit_account_id": "a", "credit_account_id": "b", "amount": 30}]
    expected = expected_balances(funding, moves)
    assert expected == {"bank": (100, 0, 0, 0), "a": (30, 100, 0, 0), "b": (0, 30, 0, 0)}
    assert balance_mismatches({"bank": (100, 0, 0, 0), "a": (30, 100, 0, 0)}, expected) == [
        "account b holds (0, 0, 0, 0), the acknowledged transfers make (0, 30, 0, 0)"
    ]


def test_lost_acknowledged_transfers_are_counted_with_their_span_and_age_at_the_kill() -> None:
    load = TransferLoad(lambda: "http://new", "key", ["a", "b"], clients=1)
    # Sent 950, 60 and 30 ms before the kill; answered 900 and 40 ms before and 200 ms after it.
    for n, (sent_ms, answered_ms) in enumerate([(950, 900), (60, 40), (30, -200)]):
        at, sent_at = KILL - timedelta(milliseconds=answered_ms), KILL - timedelta(milliseconds=sent_ms)
        load.sent[f"t{n}"] = {}
        load.acks[f"t{n}"] = Ack(f"t{n}", 201, at, 0.0, 1, False, "http://old", sent_at)
    after = snapshot([], [])
    after.transfers = {"t0": {}}  # t1 and t2 did not survive
    marks = {"killed": 10.0, "promoted": 11.0, "repointed": 12.5}
    section = failover_section(load, after, KILL, marks, 13.25, (0, "async"), set())
    assert (section["lost_acknowledged"], section["lost_ids"]) == (2, ["t1", "t2"])
    assert section["lost_span_s"] == 0.24 and section["rpo_s"] == 0.06
    assert section["lost_last_acknowledged_after_kill_s"] == 0.2
    assert (section["rto_s"], section["promote_s"], section["repoint_s"]) == (3.25, 1.0, 1.5)
    pitr: dict[str, list[object]] = {
        "invariant_violations": [],
        "missing": [],
        "unexpected": [],
        "balance_mismatches": [],
    }
    report = {"failover": section, "pitr": pitr}
    assert verdict(report, "async")["checks"]["rpo_met"] is True  # 60 ms is within 5 s
    assert verdict(report, "sync")["checks"]["rpo_met"] is False  # synchronous must lose nothing

"""The balances before and after an adjustment, read back from its journal entries."""

from __future__ import annotations

from typing import Any

from kassa.ledger.adjustments import before_and_after, is_adjustment


def entry(account: str, side: str, posted: int, counters: tuple[int, int, int, int], **extra: Any) -> dict[str, Any]:
    dp, cp, dq, cq = counters
    return {
        "account_id": account,
        "side": side,
        "posted_amount": posted,
        "pending_amount": 0,
        "debits_posted": dp,
        "credits_posted": cp,
        "debits_pending": dq,
        "credits_pending": cq,
        "normal_balance": "credit",
        "currency": "USD",
    } | extra


def test_before_is_the_first_entry_less_its_change_and_after_the_last_entry() -> None:
    rows = [
        entry("wallet", "debit", 300, (300, 1_000, 0, 0)),
        entry("suspense", "credit", 300, (0, 300, 0, 0)),
        entry("suspense", "debit", 100, (100, 300, 0, 0)),
        entry("bank", "credit", 100, (1_000, 100, 0, 0), normal_balance="debit"),
    ]
    before, after = before_and_after(rows)
    assert {k: v["posted"] for k, v in before.items()} == {"wallet": 1_000, "suspense": 0, "bank": 1_000}
    assert {k: v["posted"] for k, v in after.items()} == {"wallet": 700, "suspense": 200, "bank": 900}
    assert after["wallet"] == {
        "currency": "USD",
        "posted": 700,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 700,
    }


def test_a_pending_change_is_taken_off_the_pending_counter_of_its_side() -> None:
    rows = [entry("wallet", "debit", 0, (0, 500, 40, 0), pending_amount=40)]
    before, after = before_and_after(rows)
    assert (before["wallet"]["pending_debits"], before["wallet"]["available"]) == (0, 500)
    assert (after["wallet"]["pending_debits"], after["wallet"]["available"]) == (40, 460)


def test_only_the_marker_true_makes_an_adjustment() -> None:
    assert is_adjustment({"kassa_adjustment": True})
    assert not is_adjustment({"kassa_adjustment": "true"}) and not is_adjustment({})

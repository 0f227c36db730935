"""The provider timeouts are named settings within what the ledger accepts, and a top-up's or
withdrawal's pending transaction is recognised by its id (and nothing else is)."""

from __future__ import annotations

import pytest

from kassa.payments.domain.movements import (
    movement_of_transaction,
    topup_transaction_id,
    withdrawal_return_transaction_id,
    withdrawal_transaction_id,
)
from kassa.settings import Settings
from kassa.shared.limits import hold_timeout_s_max, pending_topup_timeout_s, pending_withdrawal_timeout_s


def test_a_movements_pending_transaction_is_recognised_and_nothing_else_is() -> None:
    assert movement_of_transaction(topup_transaction_id("top_01ab")) == ("topup", "top_01ab")
    assert movement_of_transaction(withdrawal_transaction_id("wd_01ab")) == ("withdrawal", "wd_01ab")
    for other in (
        withdrawal_return_transaction_id("wd_01ab"),  # posted at once, never expires
        "purchase:pur_01ab",
        "topup:wd_01ab",
        "withdrawal:top_01ab",
        "topup",
        "top_01ab",
    ):
        assert movement_of_transaction(other) is None, other


def test_the_provider_timeouts_default_to_their_named_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KASSA_TOPUP_TIMEOUT_S", raising=False)
    monkeypatch.delenv("KASSA_WITHDRAWAL_TIMEOUT_S", raising=False)
    settings = Settings.from_env()
    assert (settings.topup_timeout_s, settings.withdrawal_timeout_s) == (
        pending_topup_timeout_s,
        pending_withdrawal_timeout_s,
    )
    monkeypatch.setenv("KASSA_TOPUP_TIMEOUT_S", "90")
    monkeypatch.setenv("KASSA_WITHDRAWAL_TIMEOUT_S", str(hold_timeout_s_max))
    settings = Settings.from_env()
    assert (settings.topup_timeout_s, settings.withdrawal_timeout_s) == (90, hold_timeout_s_max)


@pytest.mark.parametrize("name", ["KASSA_TOPUP_TIMEOUT_S", "KASSA_WITHDRAWAL_TIMEOUT_S"])
@pytest.mark.parametrize("value", ["0", "-5", str(hold_timeout_s_max + 1)])
def test_a_provider_timeout_the_ledger_would_refuse_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        Settings.from_env()

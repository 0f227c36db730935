"""The callback rules: every order of a provider's events, with duplicates, ends in the state of
its final lifecycle step, and a contradiction is never applied."""

from __future__ import annotations

from itertools import permutations

from hypothesis import given
from hypothesis import strategies as st

from kassa.payments.adapters.sandbox_rules import RETURNING_ACCOUNT, charge_lifecycle, payout_lifecycle
from kassa.payments.domain.lifecycle import (
    Action,
    TopupStatus,
    WithdrawalStatus,
    status_after,
    topup_action,
    withdrawal_action,
)
from kassa.payments.domain.providers import EVENT_TYPES, EventType


def _run_topup(events: list[EventType]) -> tuple[TopupStatus, list[Action]]:
    status: TopupStatus = "pending"
    actions = []
    for event in events:
        action = topup_action(status, event)
        assert action is not None
        actions.append(action)
        after = status_after(action, event) if action in ("post", "void") else None
        if after is not None:
            status = after  # type: ignore[assignment]  # a plain str; a charge's post or void ends in one of ours
    return status, actions


def _run_withdrawal(events: list[EventType]) -> tuple[WithdrawalStatus, list[Action]]:
    status: WithdrawalStatus = "pending"
    actions = []
    for event in events:
        action = withdrawal_action(status, event)
        assert action is not None
        actions.append(action)
        after = status_after(action, event) if action in ("post", "void", "reverse") else None
        if after is not None:
            status = after  # type: ignore[assignment]  # a plain str, always a withdrawal status
    return status, actions


def _with_duplicates(events: list[EventType], picks: list[int]) -> list[EventType]:
    found = list(events)
    for pick in picks:
        found.insert(pick % (len(found) + 1), events[pick % len(events)])
    return found


@given(st.sampled_from(["4242424242424242", "4000000000000002", "4000000000009995"]), st.data())
def test_any_order_of_a_charges_events_with_duplicates_ends_in_its_outcome(card: str, data: st.DataObject) -> None:
    lifecycle: list[EventType] = [kind for kind, _ in charge_lifecycle(card)]  # type: ignore[misc]  # the sandbox names them as str
    order = data.draw(st.permutations(lifecycle))
    events = _with_duplicates(order, data.draw(st.lists(st.integers(0, 10), max_size=4)))
    status, actions = _run_topup(events)
    assert status == ("succeeded" if lifecycle[-1] == "charge.succeeded" else "failed")
    assert actions.count("post") + actions.count("void") == 1  # the money moves exactly once
    assert "exception" not in actions


@given(st.sampled_from(["000123456789", "000111111116", RETURNING_ACCOUNT]), st.data())
def test_any_order_of_a_payouts_events_with_duplicates_ends_in_its_outcome(number: str, data: st.DataObject) -> None:
    lifecycle: list[EventType] = [kind for kind, _ in payout_lifecycle(number)]  # type: ignore[misc]  # the sandbox names them as str
    order = data.draw(st.permutations(lifecycle))
    events = _with_duplicates(order, data.draw(st.lists(st.integers(0, 10), max_size=4)))
    status, actions = _run_withdrawal(events)
    expected = {"payout.posted": "succeeded", "payout.failed": "failed", "payout.returned": "returned"}[lifecycle[-1]]
    assert status == expected
    assert "exception" not in actions
    # Net money out of the wallet: a post takes it, a reverse gives it back; a void never took it.
    assert actions.count("post") - actions.count("reverse") == (1 if status == "succeeded" else 0)


def test_a_contradiction_is_an_exception_and_changes_nothing() -> None:
    assert topup_action("succeeded", "charge.failed") == "exception"
    assert topup_action("failed", "charge.succeeded") == "exception"
    assert withdrawal_action("succeeded", "payout.failed") == "exception"
    assert withdrawal_action("failed", "payout.posted") == "exception"
    assert status_after("exception", "charge.failed") is None


def test_every_event_type_has_a_rule_for_every_status_of_its_object() -> None:
    for event in EVENT_TYPES:
        for status in ("pending", "succeeded", "failed"):
            found = topup_action(status, event)
            assert (found is not None) == event.startswith("charge.")
        for wstatus in ("pending", "succeeded", "failed", "returned"):
            found = withdrawal_action(wstatus, event)
            assert (found is not None) == event.startswith("payout.")


def test_the_two_orders_of_post_and_return_both_give_the_money_back() -> None:
    events: list[EventType] = ["payout.posted", "payout.returned"]
    for order in permutations(events):
        status, actions = _run_withdrawal(list(order))
        assert status == "returned"
        assert actions.count("post") - actions.count("reverse") == 0

"""A purchase priced from a content's shared sale equals one computed from scratch; a changed content is priced anew."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.ledger import NewPosting
from kassa.payments.accounts import fees_account, payable_account
from kassa.payments.domain.content import Access, Content, RightsHolder
from kassa.payments.domain.splits import BPS_TOTAL, split_price
from kassa.payments.ppv_orders import _hash, purchase_order

ACCESS = Access("fixed", None, None, 0, None)


@st.composite
def contents(draw: st.DrawFn) -> Content:
    count = draw(st.integers(1, 5))
    cuts = sorted(draw(st.lists(st.integers(1, BPS_TOTAL - 1), min_size=count - 1, max_size=count - 1, unique=True)))
    shares = [b - a for a, b in itertools.pairwise([0, *cuts, BPS_TOTAL])]
    holders = tuple(RightsHolder(f"holder-{i}", s) for i, s in enumerate(shares))
    prices = {"EUR": draw(st.integers(1, 10**9)), "USD": draw(st.integers(1, 10**9))}
    fee_bps, fee_min = draw(st.integers(0, BPS_TOTAL)), draw(st.integers(0, 10**4))
    return Content(
        "t1", draw(st.sampled_from(["live", "vod"])), "live_stream", "x", prices, holders, fee_bps, fee_min, ACCESS
    )


def from_scratch(
    content: Content, currency: str, wallet: str
) -> tuple[tuple[dict[str, Any], ...], tuple[NewPosting, ...]]:
    """The legs and postings of one sale from the split rules, with the accounts named as the
    catalogue's accounts are (fee first, then the holders in their order)."""
    holders = [(h.customer_id, h.share_bps) for h in content.rights_holders]
    price = content.prices[currency]
    split = split_price(price, content.platform_fee_bps, content.platform_fee_min, holders)
    named = [(None, fees_account(currency).id)] + [(c, payable_account(c, currency).id) for c, _ in holders]
    legs: tuple[dict[str, Any], ...] = tuple(
        {"role": part.role, "customer_id": customer, "account_id": account, "amount": part.amount}
        for part, (customer, account) in zip(split, named, strict=True)
    )
    paid = [leg for leg in legs if leg["amount"] > 0]
    return legs, tuple(NewPosting(wallet, leg["account_id"], leg["amount"], currency) for leg in paid)


@settings(max_examples=300)
@given(content=contents(), currency=st.sampled_from(["EUR", "USD"]))
def test_an_order_from_the_shared_sale_equals_one_computed_from_scratch(content: Content, currency: str) -> None:
    for customer in ("fan-1", "fan-2"):  # the second is priced from the shared sale
        order = purchase_order(content, customer, currency, f"wallet:{customer}", None)
        legs, postings = from_scratch(content, currency, f"wallet:{customer}")
        row = order.row
        assert (row.price, row.legs, row.customer_id, row.wallet_account_id) == (
            content.prices[currency],
            legs,
            customer,
            f"wallet:{customer}",
        )
        assert row.rights_holders == tuple(
            {"customer_id": h.customer_id, "share_bps": h.share_bps} for h in content.rights_holders
        )
        assert order.command.postings == postings
        assert order.command.request_hash == _hash([row.id, legs])
        assert order.command.id == f"purchase:{row.id}"


def test_a_changed_content_is_priced_from_its_new_row_not_the_shared_sale() -> None:
    content = Content(
        "t1", "final", "live_stream", "x", {"EUR": 199}, (RightsHolder("club", 10_000),), 1500, 10, ACCESS
    )
    assert purchase_order(content, "fan", "EUR", "wallet:w", None).row.price == 199
    changed = replace(content, prices={"EUR": 299}, platform_fee_bps=0, platform_fee_min=0)
    order = purchase_order(changed, "fan", "EUR", "wallet:w", None)
    assert order.row.price == 299 and [leg["amount"] for leg in order.row.legs] == [0, 299]
    assert order.command.postings == (NewPosting("wallet:w", "payable:club:EUR", 299, "EUR"),)

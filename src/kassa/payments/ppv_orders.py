"""The orders of pay-per-view: what a purchase or a refund will write and post, computed from
the rows it was priced from (no I/O here; `ppv.py` reads the rows and runs the orders)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from kassa.ledger import CreateTransaction, NewPosting
from kassa.payments.accounts import fees_account, payable_account
from kassa.payments.adapters.ppv_rows import PurchaseRow, RefundRow
from kassa.payments.domain.splits import allocate_refund, refundable, split_price
from kassa.payments.errors import RefundExceedsPurchase
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant
from kassa.shared.limits import ppv_content_cache_entries_max

if TYPE_CHECKING:
    from kassa.payments.domain import entitlements as ent
    from kassa.payments.domain.content import Content

# The owners (`kassa.ledger.PRODUCT_KEY`) of pay-per-view's transactions. A purchase held for
# review is pending: only its review's decision posts or voids it (held_purchases.py).
PURCHASE_OWNER: Final = "purchase"
REFUND_OWNER: Final = "refund"
# Their transaction id namespaces, reserved with the ledger (`PayPerView`).
PURCHASE_TRANSACTIONS: Final = "purchase:"
REFUND_TRANSACTIONS: Final = "refund:"


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    """What a purchase request resolved to, before the ledger applies it."""

    row: PurchaseRow
    command: CreateTransaction
    compliance: Any = None  # what the compliance step read in the same transaction (held_purchases.py)


@dataclass(frozen=True, slots=True)
class RefundOrder:
    row: RefundRow
    command: CreateTransaction


def _hash(value: Any) -> bytes:
    return hashlib.sha256(msgspec.json.encode(value, order="sorted")).digest()


@dataclass(frozen=True, slots=True)
class _Sale:
    """What every sale of one content in one currency shares: computed once per content entry.

    The leg and split dicts are shared by the purchases priced from it and never mutated (they
    are encoded, read and copied, as every row's legs are)."""

    content: Content  # the entry it was computed from: a changed content is another object
    price: int
    legs: tuple[dict[str, Any], ...]
    rights_holders: tuple[dict[str, Any], ...]
    paid: tuple[tuple[str, int], ...]  # (account, amount) of the legs that move money
    legs_sorted_json: bytes  # the legs as `_hash` encodes them (keys sorted)


_SALES: OrderedDict[tuple[str, str, str], _Sale] = OrderedDict()


def _sale(content: Content, currency: str) -> _Sale:
    key = (content.tenant_id, content.id, currency)
    found = _SALES.get(key)
    if found is not None and found.content is content:
        return found
    price = content.prices[currency]
    holders = [(h.customer_id, h.share_bps) for h in content.rights_holders]
    legs = split_price(price, content.platform_fee_bps, content.platform_fee_min, holders)
    leg_rows: tuple[dict[str, Any], ...] = tuple(
        {
            "role": leg.role,
            "customer_id": leg.customer_id,
            "account_id": (
                fees_account(currency) if leg.customer_id is None else payable_account(leg.customer_id, currency)
            ).id,
            "amount": leg.amount,
        }
        for leg in legs
    )
    sale = _Sale(
        content,
        price,
        leg_rows,
        tuple({"customer_id": h.customer_id, "share_bps": h.share_bps} for h in content.rights_holders),
        tuple((leg["account_id"], leg["amount"]) for leg in leg_rows if leg["amount"]),
        msgspec.json.encode(leg_rows, order="sorted"),
    )
    _SALES[key] = sale
    _SALES.move_to_end(key)
    while len(_SALES) > ppv_content_cache_entries_max:
        _SALES.popitem(last=False)
    return sale


def _purchase_hash(purchase_id: str, sale: _Sale) -> bytes:
    """`_hash([purchase_id, legs])` from the legs encoded once: an id is [A-Za-z0-9_.:-], which
    JSON writes as it is, so the bytes are exactly the encoder's."""
    return hashlib.sha256(b'["' + purchase_id.encode() + b'",' + sale.legs_sorted_json + b"]").digest()


def purchase_order(
    content: Content, customer_id: str, currency: str, wallet: str, seen: ent.Entitlement | None, facts: Any = None
) -> PurchaseOrder:
    """The purchase row and ledger command of one sale: the price and split copied from `content`."""
    tenant_id, content_id = content.tenant_id, content.id
    sale = _sale(content, currency)
    purchase_id = new_id()
    row = PurchaseRow(
        tenant_id,
        purchase_id,
        new_id(),
        customer_id,
        content_id,
        currency,
        sale.price,
        content.platform_fee_bps,
        content.platform_fee_min,
        wallet,
        sale.legs,
        content.access,
        sale.rights_holders,
        # Seen holding an entitlement marked active that gives no access now: the write expires
        # it first if its window has ended (one that has not started still refuses).
        expire=seen is not None and seen.status == "active",
    )
    postings = tuple(NewPosting(wallet, account, amount, currency) for account, amount in sale.paid)
    command = CreateTransaction(
        tenant_id,
        PURCHASE_TRANSACTIONS + purchase_id,
        postings,
        False,
        None,
        None,
        {"purchase_id": purchase_id, "content_id": content_id},
        _purchase_hash(purchase_id, sale),
        generated_id=True,
        owner=PURCHASE_OWNER,
    )
    return PurchaseOrder(row, command, facts)


def refund_order(
    tenant_id: str, purchase: dict[str, Any], amount: int | None, reason: str, refund_fee: bool
) -> RefundOrder:
    """The refund of `amount` (None: all that is left) of a purchase in its current state,
    allocated over the same legs. Raises RefundExceedsPurchase."""
    purchase_id = purchase["id"]
    legs = [leg["amount"] for leg in purchase["legs"]]
    refunded = list(purchase["refunded_legs"])
    available = refundable(legs, refunded, refund_fee)
    wanted = available if amount is None else amount
    if wanted > available or available == 0:
        raise RefundExceedsPurchase(f"at most {available} {purchase['currency']} can still be refunded")
    shares = allocate_refund(wanted, legs, refunded, refund_fee)
    after = tuple(r + s for r, s in zip(refunded, shares, strict=True))
    invariant(all(a <= leg for a, leg in zip(after, legs, strict=True)), "no leg is refunded above its amount")
    leg_rows = tuple({**leg, "amount": share} for leg, share in zip(purchase["legs"], shares, strict=True))
    refund_id = new_id()
    wallet, currency = purchase["wallet_account_id"], purchase["currency"]
    row = RefundRow(
        tenant_id,
        refund_id,
        purchase_id,
        purchase["customer_id"],
        purchase["content_id"],
        purchase["refund_count"] + 1,
        wanted,
        refund_fee,
        reason,
        leg_rows,
        purchase["refunded_amount"] + wanted,
        after,
        sum(after) == sum(legs),
    )
    postings = tuple(
        NewPosting(leg["account_id"], wallet, leg["amount"], currency) for leg in leg_rows if leg["amount"]
    )
    command = CreateTransaction(
        tenant_id,
        REFUND_TRANSACTIONS + refund_id,
        postings,
        False,
        None,
        None,
        {"purchase_id": purchase_id, "refund_id": refund_id},
        _hash([refund_id, leg_rows]),
        generated_id=True,
        owner=REFUND_OWNER,
    )
    return RefundOrder(row, command)

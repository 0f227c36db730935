"""Checks of a command that need no locked state, run before it reaches the batcher.

Every caller gets them (the HTTP API, and any context calling `kassa.ledger` in process), and
they raise `InvalidRequest` (or its `UnknownCurrency`) in one fixed order, the first failure
winning:

  transfer:     amount, currency, metadata, pending/timeout, reference
  transaction:  postings count, then each posting in index order (amount, currency),
                metadata, pending/timeout, reference
  post of a pending transaction: each amount in index order (not negative)

A failing posting's error carries `extra["posting_index"]`, as the engine's do. The metadata
check includes the reserved key `PRODUCT_KEY` (`kassa_product`): the ledger sets it from a
product's `owner`, so no caller may send it, in any ledger metadata (accounts, transfers and
transactions alike, so it means the same wherever it is seen).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kassa.ledger.domain.model import PRODUCT_KEY
from kassa.ledger.errors import TransactionManagedByProduct, at_posting
from kassa.shared.errors import InvalidRequest
from kassa.shared.limits import (
    amount_minor_max,
    hold_timeout_s_max,
    metadata_bytes_max,
    metadata_keys_max,
    reference_chars_max,
    transaction_postings_max,
)
from kassa.shared.money import currency_exponent

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kassa.ledger.domain.model import CreateTransaction, CreateTransfer, PostTransaction


def check_amount(amount: int) -> None:
    if not 0 < amount <= amount_minor_max:
        raise InvalidRequest(f"amount must be a positive integer of at most {amount_minor_max} minor units")


def check_metadata(metadata: dict[str, Any]) -> None:
    # The empty object, by far the most common, costs nothing; otherwise the encoded size counts.
    if metadata and (
        len(metadata) > metadata_keys_max
        or len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()) > metadata_bytes_max
    ):
        raise InvalidRequest(f"metadata is limited to {metadata_keys_max} keys and {metadata_bytes_max} bytes")
    if metadata and PRODUCT_KEY in metadata:
        raise InvalidRequest(
            f"metadata key '{PRODUCT_KEY}' is reserved: kassa sets it on the transactions its products create"
        )


def _check_hold(pending: bool, timeout_s: int | None, reference: str | None, what: str) -> None:
    if pending and (timeout_s is None or not 0 < timeout_s <= hold_timeout_s_max):
        raise InvalidRequest(f"a pending {what} needs a timeout_s from 1 to {hold_timeout_s_max}")
    if not pending and timeout_s is not None:
        raise InvalidRequest(f"timeout_s applies only to pending {what}s")
    if reference is not None and len(reference) > reference_chars_max:
        raise InvalidRequest(f"reference is limited to {reference_chars_max} characters")


def check_account(currency: str, metadata: dict[str, Any]) -> None:
    """Raises UnknownCurrency, InvalidRequest."""
    currency_exponent(currency)
    check_metadata(metadata)


def check_transfer(cmd: CreateTransfer) -> None:
    """Raises InvalidRequest, UnknownCurrency."""
    check_amount(cmd.amount)
    currency_exponent(cmd.currency)
    check_metadata(cmd.metadata)
    _check_hold(cmd.pending, cmd.timeout_s, cmd.reference, "transfer")


def check_transaction(cmd: CreateTransaction) -> None:
    """Raises InvalidRequest, UnknownCurrency."""
    if not 1 <= len(cmd.postings) <= transaction_postings_max:
        raise InvalidRequest(f"a transaction has 1 to {transaction_postings_max} postings")
    for index, posting in enumerate(cmd.postings):
        try:
            check_amount(posting.amount)
            currency_exponent(posting.currency)
        except InvalidRequest as error:
            raise at_posting(error, index) from None
    check_metadata(cmd.metadata)
    _check_hold(cmd.pending, cmd.timeout_s, cmd.reference, "transaction")


def check_post_transaction(cmd: PostTransaction) -> None:
    """Raises InvalidRequest."""
    for index, amount in enumerate(cmd.amounts or ()):
        if amount is not None and not 0 <= amount <= amount_minor_max:
            raise at_posting(InvalidRequest("a posted amount is 0 or more minor units"), index)


def check_reserved_id(cmd: CreateTransaction, reserved: Mapping[str, str]) -> None:
    """Raises TransactionManagedByProduct when `cmd.id` lies in a product's id namespace and `cmd`
    is not that product's. `reserved` maps an id prefix ("<word>:") to its owner
    (`LedgerService.reserve_ids`). A product's ids can be known before it creates them (a
    withdrawal's return is `withdrawal-return:<withdrawal id>`): taken first by another caller,
    the product's own create would fail, and with it the money movement it records."""
    head, colon, _ = cmd.id.partition(":")
    if not colon:
        return
    owner = reserved.get(head + colon)
    if owner is not None and owner != cmd.owner:
        raise TransactionManagedByProduct(
            f"transaction ids starting with '{head}:' are the {owner} product's; choose another id", product=owner
        )

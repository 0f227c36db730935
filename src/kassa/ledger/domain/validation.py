"""Checks of a command that need no locked state, run before it reaches the batcher.

Every caller gets them (the HTTP API, and any context calling `kassa.ledger` in process), and
they raise `InvalidRequest` (or its `UnknownCurrency`) in one fixed order, the first failure
winning:

  account:      id, currency, metadata
  transfer:     id, account ids (debit, credit), amount, currency, metadata, pending/timeout,
                reference
  transaction:  id, postings count, then each posting in index order (account ids, amount,
                currency), metadata, pending/timeout, reference
  post of a pending transaction: each amount in index order (not negative)

Ids are client ids (1-64 characters of [A-Za-z0-9_.:-]), and no string of metadata or a
reference holds NUL (PostgreSQL text and jsonb cannot): the HTTP schema refuses both at the edge,
and without these checks an in-process caller got the database's CheckViolationError or
UntranslatableCharacterError instead of InvalidRequest.

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
from kassa.shared.ids import is_client_id
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


def check_id(value: str, what: str) -> None:
    if not is_client_id(value):
        raise InvalidRequest(f"{what} must be 1-64 characters of [A-Za-z0-9_.:-]")


def _has_nul(value: Any) -> bool:
    """Whether any string (key or value) of a decoded JSON value contains NUL (iterative: the
    4 KiB bound still allows nesting deeper than the recursion limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def check_amount(amount: int) -> None:
    if not 0 < amount <= amount_minor_max:
        raise InvalidRequest(f"amount must be a positive integer of at most {amount_minor_max} minor units")


def check_metadata(metadata: dict[str, Any]) -> None:
    # The empty object, by far the most common, costs nothing; otherwise the encoded size counts.
    if not metadata:
        return
    if len(metadata) > metadata_keys_max or (
        len(encoded := json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()) > metadata_bytes_max
    ):
        raise InvalidRequest(f"metadata is limited to {metadata_keys_max} keys and {metadata_bytes_max} bytes")
    # json.dumps writes NUL as \u0000: only then is the value walked (a literal "\\u0000" also hits).
    if b"\\u0000" in encoded and _has_nul(metadata):
        raise InvalidRequest("metadata strings must not contain NUL (\\u0000)")
    if PRODUCT_KEY in metadata:
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
    if reference is not None and "\x00" in reference:
        raise InvalidRequest("reference must not contain NUL (\\u0000)")


def check_account(currency: str, metadata: dict[str, Any], account_id: str) -> None:
    """Raises UnknownCurrency, InvalidRequest."""
    check_id(account_id, "an account id")
    currency_exponent(currency)
    check_metadata(metadata)


def check_transfer(cmd: CreateTransfer) -> None:
    """Raises InvalidRequest, UnknownCurrency."""
    check_id(cmd.id, "a transfer id")
    check_id(cmd.debit_account_id, "debit_account_id")
    check_id(cmd.credit_account_id, "credit_account_id")
    check_amount(cmd.amount)
    currency_exponent(cmd.currency)
    check_metadata(cmd.metadata)
    _check_hold(cmd.pending, cmd.timeout_s, cmd.reference, "transfer")


def check_transaction(cmd: CreateTransaction) -> None:
    """Raises InvalidRequest, UnknownCurrency."""
    check_id(cmd.id, "a transaction id")
    if not 1 <= len(cmd.postings) <= transaction_postings_max:
        raise InvalidRequest(f"a transaction has 1 to {transaction_postings_max} postings")
    for index, posting in enumerate(cmd.postings):
        try:
            check_id(posting.debit_account_id, "debit_account_id")
            check_id(posting.credit_account_id, "credit_account_id")
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

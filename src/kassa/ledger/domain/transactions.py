"""Multi-leg transactions in the posting engine: create, post (in part), void, expire.

A transaction's postings are applied together (`Posting._move_legs`): each posting is checked
in index order against the running balances, and one failing posting leaves no trace of any of
them. A pending transaction holds every posting's amount; posting it moves at most the held
amount per posting and releases the rest; voiding or expiring releases all of it. The error
order is the one documented in `kassa.ledger.errors`.

A transaction a product creates (a command with an `owner`) carries its owner in
`metadata[PRODUCT_KEY]`; a post, void or re-create by anyone else is refused with
`transaction_managed_by_product` before anything else about it is decided, so the generic API
cannot credit a top-up the provider never paid or release a withdrawal's hold mid-payout. The
sweeper's expiry ignores ownership: a timeout ends a product's hold too, and the product follows
it through its ExpiryWriter. A transaction without the key (the generic API's, or one a product
created before the key existed) may be settled by any caller, products included.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kassa.ledger.domain.model import (
    PRODUCT_KEY,
    CreateTransaction,
    ExpireTransaction,
    Leg,
    PostTransaction,
    Transaction,
    TransactionPosting,
    TransferStatus,
    VoidTransaction,
    slot_init,
)
from kassa.ledger.errors import (
    AccountsMustBeDifferent,
    AmountExceedsPending,
    CurrencyMismatch,
    PostingAmountsMismatch,
    TransactionExists,
    TransactionManagedByProduct,
    TransactionNotFound,
    TransactionNotPending,
    at_posting,
)
from kassa.shared.errors import KassaError
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from kassa.ledger.domain.model import EntryKind
    from kassa.ledger.domain.posting import Posting


@slot_init
@dataclass(frozen=True, slots=True)
class TransactionApplied:
    transaction: Transaction
    created: bool  # False when an identical create was already applied (idempotent by id)


TRANSACTION_EVENT_BY_STATUS = {
    "pending": "TransactionPending",
    "posted": "TransactionPosted",
    "voided": "TransactionVoided",
    "expired": "TransactionExpired",
}


def create(engine: Posting, cmd: CreateTransaction) -> TransactionApplied:
    for index, p in enumerate(cmd.postings):
        if p.debit_account_id == p.credit_account_id:
            raise at_posting(AccountsMustBeDifferent("debit_account_id and credit_account_id are the same"), index)
    existing = engine.transactions.get((cmd.tenant_id, cmd.id))
    if existing is not None:
        _check_owner(existing, cmd.owner)
        if existing.request_hash == cmd.request_hash:
            return TransactionApplied(existing, created=False)
        raise TransactionExists(f"transaction '{cmd.id}' already exists with different parameters")
    legs: list[Leg] = []
    postings: list[TransactionPosting] = []
    for index, p in enumerate(cmd.postings):
        try:
            debit = engine.account(cmd.tenant_id, p.debit_account_id)
            credit = engine.account(cmd.tenant_id, p.credit_account_id)
            for account in (debit, credit):
                if account.currency != p.currency:
                    raise CurrencyMismatch(f"account '{account.id}' is in {account.currency}, not {p.currency}")
        except KassaError as error:
            raise at_posting(error, index) from None
        posted, pending = (0, p.amount) if cmd.pending else (p.amount, 0)
        legs.append(Leg(debit, credit, posted, pending, p.amount, index, p.currency))
        postings.append(
            TransactionPosting(index, p.debit_account_id, p.credit_account_id, p.currency, p.amount, posted)
        )
    expires_at = engine.now + timedelta(seconds=cmd.timeout_s) if cmd.pending and cmd.timeout_s else None
    transaction = Transaction(
        tenant_id=cmd.tenant_id,
        id=cmd.id,
        postings=tuple(postings),
        status="pending" if cmd.pending else "posted",
        timeout_s=cmd.timeout_s if cmd.pending else None,
        expires_at=expires_at,
        reference=cmd.reference,
        # Validation refused the key in the caller's metadata, so only `owner` can set it.
        metadata=cmd.metadata if cmd.owner is None else {**cmd.metadata, PRODUCT_KEY: cmd.owner},
        request_hash=cmd.request_hash,
        created_at=engine.now,
        updated_at=engine.now,
    )
    engine.move_legs((None, transaction.id), "pending" if cmd.pending else "posted", legs)
    engine.transactions[transaction.key] = transaction
    engine.effects.new_transactions[transaction.key] = transaction
    engine.effects.events.append(transaction)
    return TransactionApplied(transaction, created=True)


def _check_owner(transaction: Transaction, owner: str | None) -> None:
    """Raises TransactionManagedByProduct when a product owns `transaction` and `owner` is not it."""
    product = transaction.metadata.get(PRODUCT_KEY)
    if product is not None and product != owner:
        raise TransactionManagedByProduct(
            f"transaction '{transaction.id}' belongs to the {product} product, which posts or voids it"
            " through its own flow; it can be read, not changed, through the ledger API",
            product=product,
        )


def _pending(engine: Posting, tenant_id: str, transaction_id: str, owner: str | None) -> Transaction:
    """The pending transaction `owner` asks to change. Raises TransactionNotFound, then
    TransactionManagedByProduct, then TransactionNotPending."""
    transaction = _found(engine, tenant_id, transaction_id)
    _check_owner(transaction, owner)
    _check_pending(transaction)
    return transaction


def _found(engine: Posting, tenant_id: str, transaction_id: str) -> Transaction:
    transaction = engine.transactions.get((tenant_id, transaction_id))
    if transaction is None:
        raise TransactionNotFound(f"transaction '{transaction_id}' does not exist")
    return transaction


def _check_pending(transaction: Transaction) -> None:
    if transaction.status != "pending":
        raise TransactionNotPending(f"transaction '{transaction.id}' is {transaction.status}")


def post(engine: Posting, cmd: PostTransaction) -> TransactionApplied:
    # The owner is checked before the overdue expiry below: a refused caller changes nothing.
    transaction = _pending(engine, cmd.tenant_id, cmd.transaction_id, cmd.owner)
    if transaction.expires_at is not None and transaction.expires_at <= engine.now:
        # Its timeout passed before the sweeper reached it: expire it now, then refuse.
        release(engine, transaction, "expired")
        raise TransactionNotPending(f"transaction '{cmd.transaction_id}' expired at its timeout")
    amounts = cmd.amounts if cmd.amounts is not None else (None,) * len(transaction.postings)
    if len(amounts) != len(transaction.postings):
        raise PostingAmountsMismatch(f"amounts must name all {len(transaction.postings)} postings, in order")
    legs: list[Leg] = []
    for p, asked in zip(transaction.postings, amounts, strict=True):
        amount = p.amount if asked is None else asked
        if amount > p.amount:
            raise at_posting(AmountExceedsPending(f"amount {amount} exceeds the pending amount {p.amount}"), p.index)
        legs.append(_leg(engine, transaction, p, amount, amount))
    done = replace(
        transaction,
        status="posted",
        postings=tuple(replace(p, posted_amount=leg.posted) for p, leg in zip(transaction.postings, legs, strict=True)),
        updated_at=engine.now,
    )
    engine.move_legs((None, done.id), "posted", legs)
    _changed(engine, done)
    return TransactionApplied(done, created=True)


def void(engine: Posting, cmd: VoidTransaction) -> TransactionApplied:
    transaction = _pending(engine, cmd.tenant_id, cmd.transaction_id, cmd.owner)
    return release(engine, transaction, "voided")


def expire(engine: Posting, cmd: ExpireTransaction) -> TransactionApplied:
    """The sweeper's expiry: a timeout ends a product's hold too, so ownership is not checked."""
    transaction = _found(engine, cmd.tenant_id, cmd.transaction_id)
    _check_pending(transaction)
    if transaction.expires_at is None or transaction.expires_at > engine.now:
        raise TransactionNotPending(f"transaction '{cmd.transaction_id}' is not due to expire")
    return release(engine, transaction, "expired")


def release(engine: Posting, transaction: Transaction, status: TransferStatus) -> TransactionApplied:
    """Void or expire `transaction`, which the caller found pending in this batch."""
    invariant(transaction.status == "pending", "only a pending transaction is released")
    invariant(status in ("voided", "expired"), "a release voids or expires")
    kind: EntryKind = "voided" if status == "voided" else "expired"
    legs = [_leg(engine, transaction, p, 0, p.amount) for p in transaction.postings]
    done = replace(transaction, status=kind, updated_at=engine.now)
    engine.move_legs((None, done.id), kind, legs)
    _changed(engine, done)
    return TransactionApplied(done, created=True)


def _leg(engine: Posting, transaction: Transaction, p: TransactionPosting, posted: int, amount: int) -> Leg:
    """Move `posted` and release the posting's whole hold (pending -= p.amount)."""
    debit = engine.account(transaction.tenant_id, p.debit_account_id)
    credit = engine.account(transaction.tenant_id, p.credit_account_id)
    return Leg(debit, credit, posted, -p.amount, amount, p.index, p.currency)


def _changed(engine: Posting, transaction: Transaction) -> None:
    engine.transactions[transaction.key] = transaction
    if transaction.key in engine.effects.new_transactions:
        engine.effects.new_transactions[transaction.key] = transaction
    else:
        engine.effects.changed_transactions[transaction.key] = transaction
    engine.effects.events.append(transaction)


def transaction_data(transaction: Transaction) -> dict[str, Any]:
    """The public shape of a transaction (API and event payloads); times stay datetimes."""
    return {
        "id": transaction.id,
        "status": transaction.status,
        "pending": transaction.pending,
        "timeout_s": transaction.timeout_s,
        "expires_at": transaction.expires_at,
        "reference": transaction.reference,
        "metadata": transaction.metadata,
        "created_at": transaction.created_at,
        "updated_at": transaction.updated_at,
        "postings": [
            {
                "index": p.index,
                "debit_account_id": p.debit_account_id,
                "credit_account_id": p.credit_account_id,
                "currency": p.currency,
                "amount": p.amount,
                "posted_amount": p.posted_amount,
            }
            for p in transaction.postings
        ],
    }

"""Provider callbacks: verified, idempotent, and never silently contradicting what was applied.

Order of checks (nothing changes when one fails): the provider is configured; the signature
header is present and well formed, not stale (more than `provider_callback_tolerance_s` away),
and matches (all in the provider's adapter); this exact delivery (event id and signature
timestamp) was not handled before (else 409 `provider_callback_replayed`); the top-up or
withdrawal it names exists in the tenant the provider names.

Then `kassa.payments.domain.lifecycle` decides. A post, void or reverse goes through the ledger
with a ProductWrite that changes the row's status, records the delivery and writes the outcome
event in the same transaction. If another delivery changed the state first (the ledger answers
`transaction_not_pending`), the decision is taken again on the new state. Duplicates and late
(out-of-order) events are recorded and change nothing; a contradiction (a failure after a
success, a success after the hold expired, ...) is recorded as a payment exception with a
`PaymentExceptionRecorded` event.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Literal

import uuid_utils

from kassa.events.outbox import NewEvent, write_events
from kassa.ledger import (
    CreateTransaction,
    NewPosting,
    PostTransaction,
    ProductWrite,
    TransactionApplied,
    TransactionNotPending,
    VoidTransaction,
)
from kassa.payments.accounts import clearing_account
from kassa.payments.adapters import movement_rows
from kassa.payments.adapters.movement_rows import Settlement
from kassa.payments.domain.lifecycle import Action, status_after, topup_action, withdrawal_action
from kassa.payments.domain.movements import Topup, Withdrawal, owner_of, withdrawal_return_transaction_id
from kassa.payments.errors import ProviderCallbackInvalid, ProviderCallbackReplayed, TopupNotFound, WithdrawalNotFound
from kassa.payments.movements import SETTLEMENTS
from kassa.shared.invariants import invariant
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from kassa.ledger import Command
    from kassa.payments.domain.providers import ProviderEvent
    from kassa.payments.movements import MovementService
    from kassa.store.pool import Conn

log = logging.getLogger("kassa.payments")
Outcome = Literal["applied", "duplicate", "stale", "exception"]
_DECISIONS_MAX = 3  # a decision is retaken only after another delivery won a race


async def handle_callback(
    movements: MovementService, provider_name: str, body: bytes, signature: str | None
) -> Outcome:
    """Raises ProviderNotFound, ProviderCallbackInvalid (and its Stale, SignatureMismatch),
    ProviderCallbackReplayed, TopupNotFound, WithdrawalNotFound."""
    provider = movements.provider(provider_name)
    event = provider.verify_callback(body, signature, int(time.time()))
    previous: Topup | Withdrawal | None = None
    for _ in range(_DECISIONS_MAX):
        async with tenant_transaction(movements.pool, event.account) as conn:
            if await movement_rows.seen_delivery(conn, event.account, provider.name, event):
                raise ProviderCallbackReplayed(f"callback {event.id} was already delivered with this signature")
            item = await _item(conn, event)
        if previous is not None and previous.status == item.status:
            # The ledger refused although nothing changed the row: its transaction is no longer
            # pending by some other way (an expiry changes the row with it: `kassa.payments.expiry`).
            # Applying now would contradict the ledger.
            return await _record_only(movements, item, event, "exception")
        action = _action(item, event)
        if action in ("duplicate", "stale", "exception"):
            return await _record_only(movements, item, event, action)
        if action == "post" and isinstance(item, Topup) and item.review_status == "open" and movements.compliance:
            # Held for review: the charge is noted, the wallet credited on approval (movement_reviews.py).
            if await movements.compliance.held_charge(item, event):
                return "applied"
        try:
            done = await movements.ledger.execute(_command(item, event, action), product=_settle(item, event, action))
        except TransactionNotPending:
            previous = item  # another delivery moved this transaction first: decide again on its state
            continue
        if isinstance(done, TransactionApplied) and not done.created:
            previous = None  # an identical reversal was already applied by a concurrent delivery
            continue
        log.info("provider callback applied", extra={"event_id": event.id, "type": event.type, "id": item.id})
        return "applied"
    invariant(False, "a callback's decision settles within a few tries")
    raise AssertionError  # unreachable


async def _item(conn: Conn, event: ProviderEvent) -> Topup | Withdrawal:
    if event.object_type == "charge":
        topup = await movement_rows.get_topup(conn, event.account, event.reference)
        if topup is None:
            raise TopupNotFound(f"top-up '{event.reference}' does not exist")
        return topup
    withdrawal = await movement_rows.get_withdrawal(conn, event.account, event.reference)
    if withdrawal is None:
        raise WithdrawalNotFound(f"withdrawal '{event.reference}' does not exist")
    return withdrawal


def _action(item: Topup | Withdrawal, event: ProviderEvent) -> Action:
    found = (
        topup_action(item.status, event.type) if isinstance(item, Topup) else withdrawal_action(item.status, event.type)
    )
    if found is None:
        raise ProviderCallbackInvalid(f"a {event.type} callback does not apply to {item.id}")
    return found


def _command(item: Topup | Withdrawal, event: ProviderEvent, action: Action) -> Command:
    if action == "post":
        return PostTransaction(item.tenant_id, item.transaction_id, owner=owner_of(item))
    if action == "void":
        return VoidTransaction(item.tenant_id, item.transaction_id, owner=owner_of(item))
    invariant(isinstance(item, Withdrawal), "only a withdrawal is reversed")
    assert isinstance(item, Withdrawal)
    # The clearing account exists: the withdrawal's own transaction used it.
    clearing = clearing_account(item.provider, item.currency).id
    wallet_account = f"wallet:{item.wallet_id}"
    return_id = withdrawal_return_transaction_id(item.id)
    return CreateTransaction(
        tenant_id=item.tenant_id,
        id=return_id,
        postings=(NewPosting(clearing, wallet_account, item.amount, item.currency),),
        pending=False,
        timeout_s=None,
        reference=item.id,
        metadata={"withdrawal_id": item.id, "returned_by": event.id},
        request_hash=hashlib.sha256(return_id.encode()).digest(),
        owner=owner_of(item),
    )


def _settle(item: Topup | Withdrawal, event: ProviderEvent, action: Action) -> ProductWrite[Settlement]:
    status = status_after(action, event.type)
    assert status is not None
    return_id = withdrawal_return_transaction_id(item.id) if action == "reverse" else None
    return ProductWrite(SETTLEMENTS, Settlement(item, status, event.failure_code, event, return_id))


async def _record_only(
    movements: MovementService, item: Topup | Withdrawal, event: ProviderEvent, outcome: Outcome
) -> Outcome:
    """Record a delivery that changes no money; a contradiction also becomes a payment exception."""
    async with tenant_transaction(movements.pool, item.tenant_id) as conn:
        if not await movement_rows.record_callbacks(conn, [(item.tenant_id, item.provider, event)], outcome):
            raise ProviderCallbackReplayed(f"callback {event.id} was already delivered with this signature")
        if outcome == "exception":
            kind = "topup" if isinstance(item, Topup) else "withdrawal"
            exception_id = "pex_" + uuid_utils.uuid7().hex
            data = await movement_rows.record_exception(conn, exception_id, kind, item, event)
            now = data["created_at"]
            await write_events(conn, [NewEvent(item.tenant_id, "PaymentExceptionRecorded", kind, item.id, data)], now)
            log.warning(
                "provider callback contradicts the applied outcome; recorded for an operator",
                extra={"event_id": event.id, "type": event.type, "id": item.id, "status": item.status},
            )
    return outcome

"""Top-ups and withdrawals the provider never answered fail when their ledger hold expires.

A top-up or withdrawal is a pending ledger transaction with a timeout (`KASSA_TOPUP_TIMEOUT_S`,
`KASSA_WITHDRAWAL_TIMEOUT_S`). When the provider sends no outcome before it, the ledger expires
the transaction: its sweeper does, or a success callback that finds it past its timeout does
(the post is refused). Either way the ledger hands the expired transactions of that batch to
`MovementExpiries` inside the same database transaction (`LedgerService.on_expiry`), which marks
the still-pending rows `failed` with `provider_timeout` and writes their `TopupFailed` or
`WithdrawalFailed` events. So the row and the ledger change together or not at all: no crash
can leave a released hold behind a `pending` row, and no consumer has to catch up.

A top-up or withdrawal still held for a compliance review when its hold expires fails with
`review_timeout` instead; a top-up the provider charged while it was held (the wallet is never
credited before the approval) also gets a payment exception (`hold.expired`), since the card
must be refunded, as after a rejection (kassa.payments.movement_reviews).

A callback arriving after that finds the row `failed`: a late success (`charge.succeeded`,
`payout.posted`) is recorded as a payment exception for an operator and never applied
(`kassa.payments.domain.lifecycle`), exactly like a success after a decline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kassa.events.outbox import NewEvent
from kassa.payments.adapters import movement_rows
from kassa.payments.domain.movements import (
    EXPIRED_AFTER_CHARGE,
    PROVIDER_TIMEOUT,
    REVIEW_TIMEOUT,
    Topup,
    movement_of_transaction,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.ledger import Transaction
    from kassa.store.pool import Conn

log = logging.getLogger("kassa.payments")


class MovementExpiries:
    """The ledger's `ExpiryWriter` for top-ups and withdrawals (one instance is enough)."""

    async def expired(self, conn: Conn, transactions: Sequence[Transaction], now: datetime) -> Sequence[NewEvent]:
        keys: dict[str, list[tuple[str, str, str]]] = {"topups": [], "withdrawals": []}
        for transaction in transactions:
            found = movement_of_transaction(transaction.id)
            if found is not None:
                kind, item_id = found
                keys[f"{kind}s"].append((transaction.tenant_id, item_id, transaction.id))
        events: list[NewEvent] = []
        for table, mine in keys.items():
            failed = await movement_rows.fail_pending(conn, table, mine, (PROVIDER_TIMEOUT, REVIEW_TIMEOUT), now)
            if len(failed) != len(mine):
                # Every status change of a row commits with its transaction's, so an expiring
                # transaction's row is pending. Refusing the expiry would keep the hold forever
                # (the sweeper would retry it without end): release it and leave a trace instead.
                done = {(item.tenant_id, item.id) for item in failed}
                lost = [item_id for tenant, item_id, _ in mine if (tenant, item_id) not in done]
                log.error("expired %s without a pending row", table, extra={"ids": lost})
            for item in failed:
                log.warning(
                    "hold expired before an outcome; failed",
                    extra={"id": item.id, "provider": item.provider, "failure_code": item.failure_code},
                )
                events.append(movement_rows.outcome_event(item, "failed", item.failure_code, now))
            events.extend(await _charged(conn, [i for i in failed if isinstance(i, Topup) and i.charged], now))
        return events


async def _charged(conn: Conn, topups: list[Topup], now: datetime) -> list[NewEvent]:
    """A top-up charged while its review was open, then expired undecided: the customer paid and
    the wallet got nothing, so an operator must refund the card (as after a rejection)."""
    recorded = await movement_rows.record_expired_charges(conn, topups, EXPIRED_AFTER_CHARGE, REVIEW_TIMEOUT, now)
    for data in recorded:
        log.warning("a charged top-up's review hold expired; recorded for an operator", extra={"id": data["object_id"]})
    return [
        NewEvent(t.tenant_id, "PaymentExceptionRecorded", "topup", t.id, d)
        for t, d in zip(topups, recorded, strict=True)
    ]


MOVEMENT_EXPIRIES = MovementExpiries()

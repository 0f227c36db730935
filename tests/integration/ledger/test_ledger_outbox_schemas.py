"""Every event type the platform writes, produced by the real code, matches its JSON Schema as stored in the outbox."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from kassa.events.validation import schema_names, validate_event
from kassa.identity.service import IdentityService
from kassa.ledger import (
    Account,
    Balance,
    CreateTransaction,
    CreateTransfer,
    LedgerService,
    NewPosting,
    PostPending,
    PostTransaction,
    VoidPending,
    VoidTransaction,
)
from support.ledger import outbox_envelopes

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_every_event_type_written_to_the_outbox_matches_its_schema(pool: Pool, ledger: LedgerService) -> None:
    tenant, _ = await IdentityService(pool).create_tenant("schemas", None, None)
    t = tenant.id
    for spec in (("bank", "USD", "debit", True), ("alice", "USD", "credit", False)):
        await ledger.create_account(Account(t, spec[0], spec[1], spec[2], spec[3], Balance(), {"k": "v"}))

    def transfer(tid: str, pending: bool, timeout_s: int = 600) -> CreateTransfer:
        timeout = timeout_s if pending else None
        return CreateTransfer(t, tid, "bank", "alice", "USD", 50, pending, timeout, "ref", {"n": 1}, tid.encode())

    def transaction(tid: str, pending: bool, timeout_s: int = 600) -> CreateTransaction:
        legs = (NewPosting("bank", "alice", 5, "USD"), NewPosting("bank", "alice", 7, "USD"))
        return CreateTransaction(t, tid, legs, pending, timeout_s if pending else None, None, {}, tid.encode())

    await ledger.execute(transfer("posted", False))
    await ledger.execute(transfer("held", True))
    await ledger.execute(PostPending(t, "held", 20))
    await ledger.execute(transfer("dropped", True))
    await ledger.execute(VoidPending(t, "dropped"))
    await ledger.execute(transfer("brief", True, timeout_s=1))
    await ledger.execute(transaction("tx-posted", False))
    await ledger.execute(transaction("tx-held", True))
    await ledger.execute(PostTransaction(t, "tx-held", (5, 0)))
    await ledger.execute(transaction("tx-dropped", True))
    await ledger.execute(VoidTransaction(t, "tx-dropped"))
    await ledger.execute(transaction("tx-brief", True, timeout_s=1))
    deadline = time.monotonic() + 30
    while not {"TransferExpired", "TransactionExpired"} <= {e.type for e in await outbox_envelopes(pool, t)}:
        assert time.monotonic() < deadline, "the holds never expired"
        await ledger.expire_due()
        await asyncio.sleep(0.05)

    events = await outbox_envelopes(pool, t)
    for event in events:
        validate_event(event)
    # Every ledger event type (the identity context's TenantCreated included) was written and
    # validated; other contexts' schemas are exercised by their own tests.
    ledger_schemas = {n for n in schema_names() if n.startswith(("Account", "Tenant", "Transfer", "Transaction"))}
    assert {f"{e.type}.v{e.version}" for e in events} | {"envelope.v1"} == ledger_schemas | {"envelope.v1"}

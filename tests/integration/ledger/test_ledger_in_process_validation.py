"""A caller of `kassa.ledger` that is not the HTTP API gets the edge's protection: bad ids and NUL
in text are InvalidRequest from the domain, never a database error (the HTTP schema refused them
at the edge, so only in-process callers reached PostgreSQL's CheckViolationError and
UntranslatableCharacterError), and nothing is written."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from kassa.ledger import (
    Account,
    Balance,
    CreateTransaction,
    CreateTransfer,
    LedgerService,
    NewPosting,
    TransactionApplied,
)
from kassa.shared.errors import InvalidRequest

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
OK = NewPosting("alice", "bob", 1, "EUR")


def transaction(tenant: str, **changes: Any) -> CreateTransaction:
    fields: dict[str, Any] = {
        "tenant_id": tenant,
        "id": "tx-1",
        "postings": (OK,),
        "pending": False,
        "timeout_s": None,
        "reference": None,
        "metadata": {},
        "request_hash": b"h",
    }
    return CreateTransaction(**{**fields, **changes})


def transfer(tenant: str, **changes: Any) -> CreateTransfer:
    fields: dict[str, Any] = {
        "tenant_id": tenant,
        "id": "tr-1",
        "debit_account_id": "alice",
        "credit_account_id": "bob",
        "currency": "EUR",
        "amount": 1,
        "pending": False,
        "timeout_s": None,
        "reference": None,
        "metadata": {},
        "request_hash": b"h",
    }
    return CreateTransfer(**{**fields, **changes})


async def test_bad_ids_and_nul_text_are_invalid_requests_from_the_domain_and_write_nothing(
    pool: Pool, ledger: LedgerService
) -> None:
    tenant = f"inproc-{uuid.uuid4().hex[:12]}"
    await pool.execute("INSERT INTO tenants (id, name) VALUES ($1, 'in-process')", tenant)
    await ledger.create_account(Account(tenant, "bank", "EUR", "debit", True, Balance()))
    for name in ("alice", "bob"):
        await ledger.create_account(Account(tenant, name, "EUR", "credit", False, Balance()))
    await ledger.execute(transfer(tenant, id="fund", debit_account_id="bank", credit_account_id="alice", amount=100))

    refused_transactions = [
        (transaction(tenant, id="x" * 65), None),
        (transaction(tenant, id="a b"), None),
        (transaction(tenant, id=""), None),
        (transaction(tenant, postings=(OK, NewPosting("alice", "b\x00b", 1, "EUR"))), 1),
        (transaction(tenant, postings=(OK, OK, NewPosting("y" * 65, "bob", 1, "EUR"))), 2),
        (transaction(tenant, reference="ref\x00"), None),
        (transaction(tenant, metadata={"note": "a\x00b"}), None),
        (transaction(tenant, metadata={"k\x00": 1}), None),
        (transaction(tenant, metadata={"deep": [{"x": ["\x00"]}]}), None),
    ]
    for command, index in refused_transactions:
        with pytest.raises(InvalidRequest) as refused:
            await ledger.execute(command)
        assert refused.value.extra == ({} if index is None else {"posting_index": index}), command
        if index is not None:
            assert refused.value.detail.startswith(f"postings[{index}]: ")
    for command_t in (
        transfer(tenant, id="z" * 65),
        transfer(tenant, debit_account_id="a/b"),
        transfer(tenant, credit_account_id="b\x00"),
        transfer(tenant, reference="\x00"),
        transfer(tenant, metadata={"n": "\x00"}),
    ):
        with pytest.raises(InvalidRequest):
            await ledger.execute(command_t)
    for account_id in ("q" * 65, "a\x00", "with space"):
        with pytest.raises(InvalidRequest):
            await ledger.create_account(Account(tenant, account_id, "EUR", "credit", False, Balance()))
    with pytest.raises(InvalidRequest):
        await ledger.create_account(Account(tenant, "carol", "EUR", "credit", False, Balance(), {"n": "\x00"}))

    assert await pool.fetchval("SELECT count(*) FROM transactions WHERE tenant_id = $1", tenant) == 0
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant) == 1  # the funding
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE tenant_id = $1", tenant) == 3
    # A backslash followed by "u0000" is ordinary text, not NUL.
    applied = await ledger.execute(transaction(tenant, metadata={"note": "\\u0000"}, reference="\\u0000"))
    assert isinstance(applied, TransactionApplied) and applied.transaction.metadata == {"note": "\\u0000"}

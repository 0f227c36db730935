"""Accounts, balances, transfers and the commands that change them.

Balances are four monotonic counters per account. Everything else is derived:
    posted    = credits_posted - debits_posted on a credit-normal account (the reverse on debit)
    available = posted - pending outflows (debits_pending on credit-normal, credits_pending on debit)
so the sum over all accounts of (credits_posted - debits_posted) is zero per currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datetime import datetime

NormalBalance = Literal["credit", "debit"]
TransferStatus = Literal["pending", "posted", "voided", "expired"]
EntryKind = Literal["pending", "posted", "voided", "expired"]
Side = Literal["debit", "credit"]


@dataclass(slots=True)
class Balance:
    """Mutable working counters; only the posting engine changes them, under a row lock."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def copy(self) -> Balance:
        return Balance(self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    def posted(self, normal: NormalBalance) -> int:
        if normal == "credit":
            return self.credits_posted - self.debits_posted
        return self.debits_posted - self.credits_posted

    def available(self, normal: NormalBalance) -> int:
        if normal == "credit":
            return self.credits_posted - self.debits_posted - self.debits_pending
        return self.debits_posted - self.credits_posted - self.credits_pending


@dataclass(slots=True)
class Account:
    tenant_id: str
    id: str
    currency: str
    normal_balance: NormalBalance
    allow_negative: bool
    balance: Balance
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.id)


@dataclass(frozen=True, slots=True)
class Transfer:
    tenant_id: str
    id: str
    debit_account_id: str
    credit_account_id: str
    currency: str
    amount: int
    posted_amount: int
    status: TransferStatus
    timeout_s: int | None
    expires_at: datetime | None
    reference: str | None
    metadata: dict[str, Any]
    request_hash: bytes
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.id)

    @property
    def pending(self) -> bool:
        """Created as a two-step transfer (a hold), whatever its status now."""
        return self.timeout_s is not None


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal line: a change to one account's counters, with the counters after it."""

    tenant_id: str
    account_id: str
    transfer_id: str
    kind: EntryKind
    side: Side
    currency: str
    posted_amount: int
    pending_amount: int
    after: Balance
    created_at: datetime


# Commands (imperative). Each carries its tenant: a batch may mix tenants, never their data.
@dataclass(frozen=True, slots=True)
class CreateTransfer:
    tenant_id: str
    id: str
    debit_account_id: str
    credit_account_id: str
    currency: str
    amount: int
    pending: bool
    timeout_s: int | None
    reference: str | None
    metadata: dict[str, Any]
    request_hash: bytes
    generated_id: bool = False  # the server made the id, so no existing transfer can have it


@dataclass(frozen=True, slots=True)
class PostPending:
    tenant_id: str
    transfer_id: str
    amount: int | None  # None posts the full pending amount


@dataclass(frozen=True, slots=True)
class VoidPending:
    tenant_id: str
    transfer_id: str


@dataclass(frozen=True, slots=True)
class ExpirePending:
    tenant_id: str
    transfer_id: str


Command = CreateTransfer | PostPending | VoidPending | ExpirePending


def command_transfer_key(command: Command) -> tuple[str, str]:
    if isinstance(command, CreateTransfer):
        return (command.tenant_id, command.id)
    return (command.tenant_id, command.transfer_id)

"""Accounts, balances, transfers and the commands that change them.

Balances are four monotonic counters per account. Everything else is derived:
    posted    = credits_posted - debits_posted on a credit-normal account (the reverse on debit)
    available = posted - pending outflows (debits_pending on credit-normal, credits_pending on debit)
so the sum over all accounts of (credits_posted - debits_posted) is zero per currency.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

if TYPE_CHECKING:
    from datetime import datetime

_Frozen = TypeVar("_Frozen", bound=type)


def slot_init(cls: _Frozen) -> _Frozen:
    """Give a frozen, slotted dataclass an `__init__` that stores each field through its slot's
    descriptor instead of `object.__setattr__(self, name, value)`, the generated one: the same
    signature, defaults and result (the instance stays frozen), in two thirds of the time. A
    batch builds one Transfer, two Entries and an outcome per transfer, and with 15 and 12 fields
    their construction was a third of applying a transfer (docs/ledger-cost.md)."""
    params, body, names = [], [], {}
    for f in fields(cls):
        if f.default_factory is not MISSING or f.kw_only or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields are stored by slot")
        names[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's member descriptor
        if f.default is MISSING:
            params.append(f.name)
        else:
            names[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which a slot init would skip")
    source = f"def __init__(self, {', '.join(params)}) -> None:\n" + "\n".join(body) + "\n"
    exec(source, names)  # noqa: S102 - constant source built from the class's own field names
    init = names["__init__"]
    generated = cls.__dict__["__init__"]
    init.__qualname__ = generated.__qualname__
    init.__annotations__ = dict(generated.__annotations__)  # inspect.signature, hypothesis
    init.__module__ = cls.__module__
    type.__setattr__(cls, "__init__", init)
    return cls


# The metadata key that names the product owning a transaction ("topup", "withdrawal",
# "purchase", ...). The ledger sets it from the command's `owner` and refuses it in any caller's
# metadata, so it can neither be forged nor stripped; only the owner may post or void the
# transaction (`domain/transactions.py`), while anyone with read access may read it.
PRODUCT_KEY: Final = "kassa_product"

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


@slot_init
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


@slot_init
@dataclass(frozen=True, slots=True)
class TransactionPosting:
    """One posting of a stored multi-leg transaction; `index` is its position (0-based)."""

    index: int
    debit_account_id: str
    credit_account_id: str
    currency: str
    amount: int
    posted_amount: int


@slot_init
@dataclass(frozen=True, slots=True)
class Transaction:
    """A multi-leg ledger transaction: 1..N postings applied (and posted, voided, expired) as one.
    Each currency balances on its own; a posting moves one amount between two accounts."""

    tenant_id: str
    id: str
    postings: tuple[TransactionPosting, ...]
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
        """Created as a two-step transaction (holds on every posting), whatever its status now."""
        return self.timeout_s is not None


@slot_init
@dataclass(frozen=True, slots=True)
class Entry:
    """One journal line: a change to one account's counters, with the counters after it. It
    belongs to a transfer (`transfer_id`) or to one posting of a multi-leg transaction
    (`transaction_id`, `posting_index`), never both."""

    tenant_id: str
    account_id: str
    transfer_id: str | None
    kind: EntryKind
    side: Side
    currency: str
    posted_amount: int
    pending_amount: int
    after: Balance
    created_at: datetime
    transaction_id: str | None = None
    posting_index: int | None = None


@slot_init
@dataclass(frozen=True, slots=True)
class Leg:
    """One debit/credit pair of a change: `posted` added to both posted counters and `pending`
    (signed) to both pending counters. `amount` is what the caller asked to move (for messages);
    `index` is the posting's index in a multi-leg transaction (None for a transfer)."""

    debit: Account
    credit: Account
    posted: int
    pending: int
    amount: int
    index: int | None
    currency: str


# Commands (imperative). Each carries its tenant: a batch may mix tenants, never their data.
@slot_init
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


@slot_init
@dataclass(frozen=True, slots=True)
class PostPending:
    tenant_id: str
    transfer_id: str
    amount: int | None  # None posts the full pending amount


@slot_init
@dataclass(frozen=True, slots=True)
class VoidPending:
    tenant_id: str
    transfer_id: str


@slot_init
@dataclass(frozen=True, slots=True)
class ExpirePending:
    tenant_id: str
    transfer_id: str


@slot_init
@dataclass(frozen=True, slots=True)
class NewPosting:
    """A posting as a caller asks for it: `amount` minor units of `currency` from debit to credit."""

    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str


@slot_init
@dataclass(frozen=True, slots=True)
class CreateTransaction:
    tenant_id: str
    id: str
    postings: tuple[NewPosting, ...]
    pending: bool
    timeout_s: int | None
    reference: str | None
    metadata: dict[str, Any]
    request_hash: bytes
    generated_id: bool = False
    # The product creating it (stored as metadata[PRODUCT_KEY]); None for the generic ledger API.
    owner: str | None = None


@slot_init
@dataclass(frozen=True, slots=True)
class PostTransaction:
    tenant_id: str
    transaction_id: str
    # One amount per posting (None posts that posting's full hold); None posts everything.
    amounts: tuple[int | None, ...] | None = None
    # Who asks: the owning product's name, or None for the generic ledger API, which may not
    # settle a product's transaction (transaction_managed_by_product).
    owner: str | None = None


@slot_init
@dataclass(frozen=True, slots=True)
class VoidTransaction:
    tenant_id: str
    transaction_id: str
    owner: str | None = None  # as PostTransaction.owner


@slot_init
@dataclass(frozen=True, slots=True)
class ExpireTransaction:
    tenant_id: str
    transaction_id: str


TransferCommand = CreateTransfer | PostPending | VoidPending | ExpirePending
TransactionCommand = CreateTransaction | PostTransaction | VoidTransaction | ExpireTransaction
Command = TransferCommand | TransactionCommand


def command_transfer_key(command: Command) -> tuple[str, str]:
    """The (tenant, id) a command names: a transfer's, or a transaction's (see `is_transaction`)."""
    if isinstance(command, _CREATES):
        return (command.tenant_id, command.id)
    if isinstance(command, _TRANSFER_CHANGES):
        return (command.tenant_id, command.transfer_id)
    return (command.tenant_id, command.transaction_id)


def is_transaction(command: Command) -> bool:
    return isinstance(command, _TRANSACTION_COMMANDS)


# Tuples, not `A | B` unions: isinstance against a tuple is about three times faster, and these
# run several times per command of every batch.
_CREATES = (CreateTransfer, CreateTransaction)
_TRANSFER_CHANGES = (PostPending, VoidPending, ExpirePending)
_TRANSACTION_COMMANDS = (CreateTransaction, PostTransaction, VoidTransaction, ExpireTransaction)

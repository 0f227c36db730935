"""The ledger accounts of the payments context, by name, created on first use.

Shared naming (payments-core, payments-ppv and compliance use it):

    wallet:<wallet id>                  credit-normal, no overdraft: a customer's money
    platform:fees:<CUR>                 credit-normal: the platform's fee revenue
    platform:refunds:<CUR>              credit-normal, may go negative: refunds the platform
                                        funds itself (a refunded fee it chose to absorb)
    provider:<name>:clearing:<CUR>      debit-normal, may go negative: what the provider owes
                                        us (top-ups charged, not yet settled) net of what we
                                        owe it (payouts it made for us)
    payable:<customer id>:<CUR>         credit-normal, may go negative: a rights holder's
                                        payable; negative after a payout that a later refund
                                        clawed back, recovered from its later sales

`ensure_account` creates an account idempotently (an existing one is fine) and remembers, per
process, which ones exist, so the hot path pays nothing after the first use. An existing
account with other properties is a programmer error (two callers disagreeing on a name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kassa.ledger import Account, AccountExists, Balance
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from kassa.ledger import LedgerService, NormalBalance

__all__ = [
    "AccountSpec",
    "PlatformAccounts",
    "clearing_account",
    "fees_account",
    "payable_account",
    "refunds_account",
    "wallet_account",
]


@dataclass(frozen=True, slots=True)
class AccountSpec:
    id: str
    currency: str
    normal_balance: NormalBalance
    allow_negative: bool


def wallet_account(wallet_id: str, currency: str) -> AccountSpec:
    return AccountSpec(f"wallet:{wallet_id}", currency, "credit", False)


def fees_account(currency: str) -> AccountSpec:
    return AccountSpec(f"platform:fees:{currency}", currency, "credit", False)


def refunds_account(currency: str) -> AccountSpec:
    return AccountSpec(f"platform:refunds:{currency}", currency, "credit", True)


def clearing_account(provider: str, currency: str) -> AccountSpec:
    return AccountSpec(f"provider:{provider}:clearing:{currency}", currency, "debit", True)


def payable_account(customer_id: str, currency: str) -> AccountSpec:
    return AccountSpec(f"payable:{customer_id}:{currency}", currency, "credit", True)


class PlatformAccounts:
    """Creates the accounts above on first use, once per process and tenant."""

    def __init__(self, ledger: LedgerService) -> None:
        self.ledger = ledger
        self._known: set[tuple[str, str]] = set()

    async def ensure(self, tenant_id: str, spec: AccountSpec) -> str:
        """The account's id, after making sure it exists with these properties."""
        if (tenant_id, spec.id) in self._known:
            return spec.id
        account = Account(
            tenant_id=tenant_id,
            id=spec.id,
            currency=spec.currency,
            normal_balance=spec.normal_balance,
            allow_negative=spec.allow_negative,
            balance=Balance(),
            metadata={"kassa": "payments"},
        )
        try:
            await self.ledger.create_account(account)
        except AccountExists:
            found = await self.ledger.get_account(tenant_id, spec.id)
            invariant(
                (found.currency, found.normal_balance, found.allow_negative)
                == (spec.currency, spec.normal_balance, spec.allow_negative),
                "an existing payments account has the properties its name promises",
            )
        self._known.add((tenant_id, spec.id))
        return spec.id

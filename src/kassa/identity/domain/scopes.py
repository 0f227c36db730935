"""API key scopes: the one list of what a key may be allowed to do, and how scopes imply others.

Every route of the API names exactly one scope in the route registry (`api.routing.endpoint`),
so a route cannot be added without deciding who may call it. Rules:

- `admin` is everything of the tenant, including managing API keys and reading the audit log.
  A tenant's first key (created with the tenant) has it, so existing integrations keep working.
- `<area>:write` implies `<area>:read` (a key that can create accounts can read them).
- `tenants:write` is the platform's: only the operator's admin key (role `admin`, no tenant)
  holds it; a tenant key can never be given it.

Pure: standard library only.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Scope = Literal[
    "accounts:read",
    "accounts:write",
    "transactions:read",
    "transactions:write",
    "payments:read",
    "payments:write",
    "customers:read",
    "customers:write",
    "compliance:read",
    "compliance:write",
    "compliance:review",
    "webhooks:read",
    "webhooks:write",
    "notifications:read",
    "admin",
    "tenants:write",
]

ALL_SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
ADMIN: Final[Scope] = "admin"
PLATFORM_SCOPES: Final[frozenset[Scope]] = frozenset({"tenants:write"})
# What a tenant key may be given.
TENANT_SCOPES: Final[tuple[Scope, ...]] = tuple(s for s in ALL_SCOPES if s not in PLATFORM_SCOPES)
# What each scope means, for the OpenAPI document and the README table.
DESCRIPTIONS: Final[dict[Scope, str]] = {
    "accounts:read": "read accounts, balances and journal entries",
    "accounts:write": "create accounts (implies accounts:read)",
    "transactions:read": "read transfers and transactions",
    "transactions:write": "move money: transfers, holds, batches, transactions (implies transactions:read)",
    "payments:read": "read wallets, purchases, payouts and other payment products",
    "payments:write": "create payments, wallets, refunds, payouts (implies payments:read)",
    "customers:read": "read customers and their KYC state",
    "customers:write": "create and change customers, submit KYC (implies customers:read)",
    "compliance:read": "read monitoring rules, limits and the review queue",
    "compliance:write": "change monitoring rules and limits (implies compliance:read)",
    "compliance:review": "decide reviews and read the audit log (implies compliance:read)",
    "webhooks:read": "read webhook endpoints and their deliveries",
    "webhooks:write": "create, change, rotate and delete webhook endpoints (implies webhooks:read)",
    "notifications:read": "read the notification log",
    "admin": "everything of the tenant, including API keys and the audit log",
    "tenants:write": "create tenants (the platform operator's admin key only)",
}
_IMPLIES: Final[dict[str, tuple[str, ...]]] = {
    "compliance:review": ("compliance:read",),
    "compliance:write": ("compliance:read",),
}


def is_scope(value: str) -> bool:
    return value in ALL_SCOPES


def expand(held: frozenset[str]) -> frozenset[str]:
    """Every scope that `held` grants, the implied ones included."""
    granted = set(held)
    if ADMIN in held:
        granted.update(TENANT_SCOPES)
    for scope in held:
        area, _, access = scope.partition(":")
        if access == "write":
            granted.add(f"{area}:read")
        granted.update(_IMPLIES.get(scope, ()))
    return frozenset(granted)


def allows(held: frozenset[str], needed: Scope) -> bool:
    """Whether a key holding `held` (already expanded) may use a route that needs `needed`."""
    return needed in held


__all__ = [
    "ADMIN",
    "ALL_SCOPES",
    "DESCRIPTIONS",
    "PLATFORM_SCOPES",
    "TENANT_SCOPES",
    "Scope",
    "allows",
    "expand",
    "is_scope",
]

"""The compliance service: what payment products, the API and the CLI call.

Every function is tenant-scoped by its first argument. Payments go through `pay` (limits, rules,
reviews: payments.py); customers are screened at creation (`register_customer`) and again when
the operator loads a new list (sanctions.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from kassa.compliance import payments, sanctions
from kassa.compliance.adapters import rows
from kassa.compliance.domain.kyc import Kyc
from kassa.compliance.domain.limits import Limit, LimitSet, check_overrides
from kassa.compliance.domain.model import Screening, Standing
from kassa.compliance.domain.rules import Rule, RuleSet, validate_condition
from kassa.compliance.errors import RuleInvalid
from kassa.compliance.kyc import KycFlow
from kassa.shared.clock import utcnow
from kassa.shared.ids import is_client_id
from kassa.shared.limits import rules_per_tenant_max
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from kassa.compliance.domain.limits import Direction
    from kassa.compliance.domain.model import Review
    from kassa.compliance.domain.verification import KycProvider
    from kassa.compliance.kyc import PersonalDataVault
    from kassa.ledger import LedgerService
    from kassa.store.pool import Conn, Pool

_ACTIONS = ("allow", "review", "block")


class CustomerLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def created_at(self) -> datetime | None: ...


class CustomerReader(Protocol):
    """Identity's CustomerService, as compliance reads it."""

    async def get_customer(self, tenant_id: str, customer_id: str) -> CustomerLike: ...


class ComplianceService:
    def __init__(
        self,
        pool: Pool,
        ledger: LedgerService,
        audit: payments.Audit | None = None,
        clock: Callable[[], datetime] = utcnow,
        vault: PersonalDataVault | None = None,
        kyc_provider: KycProvider | None = None,
        customers: CustomerReader | None = None,
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.audit = audit
        self.clock = clock
        # Identity's customers: a customer compliance has never seen (its screening at creation
        # failed, or it predates compliance) is screened before its first payment.
        self.customers = customers
        # KYC verifications (kyc.py): off (503 kyc_unavailable) without a vault and a provider.
        self.kyc = KycFlow(pool, vault, kyc_provider, audit)
        # What a review decision does to the product it holds, by kind (held_product).
        self.products: dict[str, payments.HeldProduct] = {}

    async def register_customer(
        self, tenant_id: str, customer_id: str, name: str, country: str | None, created_at: datetime
    ) -> Screening:
        """Record a new customer (tier 0, unverified) and screen its name against the list."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await rows.standing(conn, tenant_id, customer_id, lock=True)
            if found is None:
                await rows.save_standing(conn, Standing(tenant_id, customer_id, Kyc(), None, country, created_at))
            listed = await sanctions.listed_names(conn)
        return await sanctions.screen_customer(self.pool, tenant_id, customer_id, name, listed, self.clock())

    async def standing(self, tenant_id: str, customer_id: str) -> tuple[Standing, Screening | None]:
        """A customer's KYC, block and latest screening (tier 0 and no screening if unknown)."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await rows.standing(conn, tenant_id, customer_id)
            row = await conn.fetchrow(
                "SELECT list_version, status, matches FROM compliance_screenings"
                " WHERE tenant_id = $1 AND customer_id = $2",
                tenant_id,
                customer_id,
            )
        standing = found or Standing(tenant_id, customer_id, Kyc(), None, None, self.clock())
        screening = None
        if row is not None:
            screening = Screening(customer_id, row["list_version"], row["status"], tuple(_json(row["matches"])))
        return standing, screening

    async def hits(self, tenant_id: str, after: str | None, limit: int) -> list[Screening]:
        """Customers whose latest screening is a sanctions hit, by customer id after the cursor."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await conn.fetch(
                "SELECT customer_id, list_version, status, matches FROM compliance_screenings"
                " WHERE tenant_id = $1 AND status = 'hit' AND ($2::text IS NULL OR customer_id > $2)"
                " ORDER BY customer_id LIMIT $3",
                tenant_id,
                after,
                limit,
            )
        return [Screening(r["customer_id"], r["list_version"], r["status"], tuple(_json(r["matches"]))) for r in found]

    async def pay(self, payment: payments.Payment) -> payments.Moved:
        """See payments.pay. Raises CapabilityDisabled, LimitExceeded, BlockedByPolicy and the
        ledger's errors."""
        return await payments.pay(self.ledger, await self.check(payment))

    async def facts(
        self, conn: Conn, tenant_id: str, customer_id: str, direction: Direction, currency: str
    ) -> payments.PaymentFacts:
        """What `check` reads, read in the caller's tenant transaction ahead of time."""
        return await payments.facts_in(conn, tenant_id, customer_id, direction, currency, self.clock())

    async def facts_many(
        self, conn: Conn, tenant_id: str, customer_ids: list[str], direction: Direction, currency: str
    ) -> dict[str, payments.PaymentFacts]:
        """`facts` of several customers of one tenant, in one statement (concurrent payments)."""
        return await payments.facts_many_in(conn, tenant_id, customer_ids, direction, currency, self.clock())

    async def check(self, payment: payments.Payment, facts: payments.PaymentFacts | None = None) -> payments.Checked:
        """See payments.check_facts (for products that write their own ledger job), on `facts`
        when the product read them already (`facts`). Raises CapabilityDisabled, LimitExceeded,
        BlockedByPolicy, CustomerNotFound (a customer compliance never saw and identity does
        not know)."""
        now = self.clock()
        if facts is None:
            facts = await payments.read_facts(self.pool, payment, now)
        if not facts[3] and self.customers is not None:
            # Never screened (its screening at creation failed, or it predates compliance):
            # screen it before its first payment, then read again.
            await self._screen(payment.command.tenant_id, payment.customer_id)
            facts = await payments.read_facts(self.pool, payment, now)
        standing, rules, today, _, limits = facts
        return payments.check_facts(payment, standing, rules, today, now, limits)

    def held_product(self, kind: str, product: payments.HeldProduct) -> None:
        """Register what a review decision does to a product of this kind (payments' top-ups,
        withdrawals and purchases register themselves at bootstrap)."""
        self.products[kind] = product

    async def _screen(self, tenant_id: str, customer_id: str) -> None:
        assert self.customers is not None
        customer = await self.customers.get_customer(tenant_id, customer_id)  # CustomerNotFound
        assert customer.created_at is not None
        await self.register_customer(tenant_id, customer.id, customer.name, customer.country, customer.created_at)

    async def decide(self, tenant_id: str, review_id: str, approve: bool, reviewer: str, reason: str) -> Review:
        """See payments.decide. Raises ReviewNotFound, ReviewDecided, TransactionNotPending."""
        return await payments.decide(
            self.pool, self.ledger, self.audit, tenant_id, review_id, approve, reviewer, reason, self.products
        )

    async def review(self, tenant_id: str, review_id: str) -> Review | None:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await rows.review(conn, tenant_id, review_id)

    async def reviews(self, tenant_id: str, status: str | None, after: str | None, limit: int) -> list[Review]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await rows.reviews(conn, tenant_id, status, after, limit)

    async def rules(self, tenant_id: str, version: int | None = None) -> RuleSet:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await rows.rule_set(conn, tenant_id, version)

    async def limits(self, tenant_id: str) -> LimitSet:
        """The tenant's limit overrides and their version (version 0: the defaults)."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await rows.limit_set(conn, tenant_id)

    async def set_limits(self, tenant_id: str, overrides: tuple[Limit, ...], actor: str, reason: str) -> LimitSet:
        """Store a new version of the tenant's limit overrides (the whole set: a limit left out
        goes back to its default). Audited as `limits.changed`. Raises LimitsInvalid."""
        check_overrides(overrides)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kassa.limits:' || $1))", tenant_id)
            before = await rows.limit_set(conn, tenant_id)
            stored = LimitSet(before.version + 1, overrides)
            await rows.insert_limit_set(conn, tenant_id, stored, actor, reason)
            await self._audit_version(
                conn,
                tenant_id,
                actor,
                ("limits.changed", "limit_set", "limits"),
                (before.version, rows.plain_limits(before.overrides)),
                (stored.version, rows.plain_limits(overrides)),
                reason,
            )
        return stored

    async def _audit_version(
        self,
        conn: Conn,
        tenant_id: str,
        actor: str,
        what: tuple[str, str, str],
        before: tuple[int, Any],
        after: tuple[int, Any],
        reason: str,
    ) -> None:
        """Record a new version of rules or limits in the audit log: `what` is (action, target
        type, the key of the versioned items), before and after are (version, items)."""
        if self.audit is None:
            return
        action, target_type, key = what
        await self.audit(
            conn,
            tenant_id=tenant_id,
            actor_key_id=actor,
            action=action,
            target_type=target_type,
            target_id=str(after[0]),
            before={"version": before[0], key: before[1]},
            after={"version": after[0], key: after[1], "reason": reason},
        )

    async def set_rules(self, tenant_id: str, rules: list[dict[str, Any]], actor: str, reason: str) -> RuleSet:
        """Store a new version of the tenant's rules (the whole set). Raises RuleInvalid."""
        parsed = parse_rules(rules)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kassa.rules:' || $1))", tenant_id)
            before = await rows.rule_set(conn, tenant_id)
            stored = RuleSet(before.version + 1, parsed)
            await rows.insert_rule_set(conn, tenant_id, stored, actor, reason)
            await self._audit_version(
                conn,
                tenant_id,
                actor,
                ("rule.changed", "rule_set", "rules"),
                (before.version, _plain(before)),
                (stored.version, _plain(stored)),
                reason,
            )
        return stored


def parse_rules(rules: list[dict[str, Any]]) -> tuple[Rule, ...]:
    """Rules from their JSON shape. Raises RuleInvalid."""
    if not isinstance(rules, list) or len(rules) > rules_per_tenant_max:
        raise RuleInvalid(f"rules is a list of at most {rules_per_tenant_max} rules")
    parsed: list[Rule] = []
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("id"), str) or not is_client_id(rule["id"]):
            raise RuleInvalid("each rule has an id (letters, digits, _.:-, at most 64)")
        if rule.get("action") not in _ACTIONS:
            raise RuleInvalid(f"rule {rule['id']}: action is one of {', '.join(_ACTIONS)}")
        validate_condition(rule.get("condition"))
        parsed.append(Rule(rule["id"], rule["condition"], rule["action"]))
    if len({r.id for r in parsed}) != len(parsed):
        raise RuleInvalid("rule ids are unique within the set")
    return tuple(parsed)


def _plain(rules: RuleSet) -> list[dict[str, Any]]:
    return [{"id": r.id, "condition": r.condition, "action": r.action} for r in rules.rules]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value

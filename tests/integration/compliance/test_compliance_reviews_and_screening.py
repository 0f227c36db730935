"""Rules hold or block payments; reviews post or void held money; sanctions hits block customers, on any list."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kassa.compliance import BlockedByPolicy, ComplianceService, ReviewDecided, RuleInvalid, sanctions
from kassa.ledger import Batcher, LedgerService
from support.compliance import AuditedCompliance, balance, payment, set_standing, shop_with_customer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.compliance.sanctions import CustomerLike
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "compliance"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
REVIEW_LARGE = [{"id": "large", "condition": {"kind": "large_amount", "amount_min": 5_000}, "action": "review"}]


@pytest.fixture
async def service(app_pool: Pool) -> AsyncIterator[AuditedCompliance]:
    batcher = Batcher(app_pool)
    batcher.start()
    audited: list[dict[str, Any]] = []

    async def audit(conn: Any, **record: Any) -> None:
        assert conn.is_in_transaction()
        audited.append(record)

    svc = AuditedCompliance(app_pool, LedgerService(app_pool, batcher), audit=audit)
    svc.audited = audited
    try:
        yield svc
    finally:
        await batcher.stop()


async def transaction_status(pool: Pool, tenant: str, tx_id: str) -> str:
    return str(await pool.fetchval("SELECT status FROM transactions WHERE tenant_id = $1 AND id = $2", tenant, tx_id))


async def test_a_payment_a_rule_reviews_is_held_until_approved_then_posted(
    pool: Pool, app_pool: Pool, service: AuditedCompliance
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 50_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    rules = await service.set_rules(tenant, REVIEW_LARGE, "key_reviewer", "large payments get a second look")
    held_payment = payment(tenant, "c1-a", 6_000)
    held = await service.pay(held_payment)
    assert (held.outcome, held.transaction.transaction.status) == ("held", "pending")
    assert await balance(pool, tenant, "c1-a") == (50_000, 6_000)  # the money is held, not moved
    assert [r.id for r in await service.reviews(tenant, "open", None, 10)] == [held.review_id]
    assert held.review_id is not None

    review = await service.decide(tenant, held.review_id, True, "key_reviewer", "customer called, known supplier")
    assert (review.status, review.reviewer, review.reason, review.rule_version, review.rule_ids) == (
        "approved",
        "key_reviewer",
        "customer called, known supplier",
        rules.version,
        ("large",),
    )
    assert await transaction_status(pool, tenant, held_payment.command.id) == "posted"
    assert await balance(pool, tenant, "c1-a") == (44_000, 0)
    assert await service.reviews(tenant, "open", None, 10) == []
    with pytest.raises(ReviewDecided):
        await service.decide(tenant, held.review_id, False, "key_other", "too late")
    assert await transaction_status(pool, tenant, held_payment.command.id) == "posted"
    actions = [a["action"] for a in service.audited]
    assert actions == ["rule.changed", "review.decided"]


async def test_a_rejected_review_voids_the_held_money(pool: Pool, app_pool: Pool, service: ComplianceService) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 50_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    await service.set_rules(tenant, REVIEW_LARGE, "key_reviewer", "second look")
    held_payment = payment(tenant, "c1-a", 7_000)
    held = await service.pay(held_payment)
    assert held.review_id is not None
    review = await service.decide(tenant, held.review_id, False, "key_reviewer", "no invoice")
    assert review.status == "rejected"
    assert await transaction_status(pool, tenant, held_payment.command.id) == "voided"
    assert await balance(pool, tenant, "c1-a") == (50_000, 0)


async def test_small_payments_pass_and_rule_versions_count_up(
    pool: Pool, app_pool: Pool, service: ComplianceService
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 50_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    first = await service.set_rules(tenant, REVIEW_LARGE, "key_a", "v1")
    second = await service.set_rules(
        tenant,
        [
            *REVIEW_LARGE,
            {"id": "kp", "condition": {"kind": "high_risk_country", "countries": ["KP"]}, "action": "block"},
        ],
        "key_b",
        "v2",
    )
    assert (first.version, second.version) == (1, 2)
    assert (await service.rules(tenant, 1)).rules == first.rules
    assert (await service.pay(payment(tenant, "c1-a", 100))).outcome == "posted"
    with pytest.raises(RuleInvalid):
        await service.set_rules(tenant, [{"id": "x", "condition": {"kind": "eval"}, "action": "block"}], "key_b", "bad")
    assert (await service.rules(tenant)).version == 2


async def test_a_customer_in_a_high_risk_country_is_blocked_by_policy(
    pool: Pool, app_pool: Pool, service: ComplianceService
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 50_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO, country="KP")
    await service.set_rules(
        tenant,
        [{"id": "kp", "condition": {"kind": "high_risk_country", "countries": ["KP"]}, "action": "block"}],
        "key_a",
        "kp",
    )
    refused = payment(tenant, "c1-a", 100)
    with pytest.raises(BlockedByPolicy) as caught:
        await service.pay(refused)
    assert caught.value.extra == {"rule_ids": ["kp"], "rule_version": 1}
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE tenant_id = $1 AND id = $2", tenant, refused.command.id
        )
        == 0
    )


@dataclass(frozen=True)
class Person:
    id: str
    name: str


class Directory:
    def __init__(self, people: dict[str, list[Person]]) -> None:
        self.people = people

    async def list_customers(self, tenant_id: str, after_id: str | None, limit: int) -> list[CustomerLike]:
        found: list[CustomerLike] = sorted(self.people.get(tenant_id, []), key=lambda p: p.id)
        return [p for p in found if after_id is None or p.id > after_id][:limit]


async def test_a_sanctions_hit_at_creation_blocks_the_customer_and_its_payments(
    pool: Pool, app_pool: Pool, service: ComplianceService
) -> None:
    version, count = await sanctions.load(pool, FIXTURES / "sanctions_small.csv")
    assert count == 4
    tenant = await shop_with_customer(pool, {"c1-a": 50_000})
    hit = await service.register_customer(tenant, "c1", "Victor Bout", "DE", LONG_AGO)
    assert (hit.status, hit.list_version, [m["entry_id"] for m in hit.matches]) == ("hit", version, ["NK-test-bout"])
    standing, screening = await service.standing(tenant, "c1")
    assert standing.kyc.blocked and standing.blocked_reason is not None and "NK-test-bout" in standing.blocked_reason
    assert "Bout" not in standing.blocked_reason  # the reason names the entry, not the person
    assert screening == hit
    assert {c.status for c in standing.kyc.capabilities()} == {"disabled"}
    with pytest.raises(BlockedByPolicy):  # the default rule set blocks blocked customers
        await service.pay(payment(tenant, "c1-a", 100))
    near = await service.register_customer(tenant, "c2", "Vitor Boutros", "DE", LONG_AGO)
    assert near.status == "clear"


async def test_a_new_list_screens_every_known_customer_again(
    pool: Pool, app_pool: Pool, service: ComplianceService
) -> None:
    await sanctions.load(pool, FIXTURES / "sanctions_small.csv")
    tenant = await shop_with_customer(pool, {})
    await service.register_customer(tenant, "c1", "Marta Kowalczyk Nowak", "PL", LONG_AGO)
    await service.register_customer(tenant, "c2", "Anna Schmidt", "DE", LONG_AGO)
    assert not (await service.standing(tenant, "c1"))[0].kyc.blocked

    version, _ = await sanctions.load(pool, FIXTURES / "sanctions_update.csv")
    directory = Directory({tenant: [Person("c1", "Marta Kowalczyk Nowak"), Person("c2", "Anna Schmidt")]})
    counts = await sanctions.rescreen(pool, app_pool, directory, datetime.now(UTC))
    assert counts["screened"] >= 2
    standing, screening = await service.standing(tenant, "c1")
    assert standing.kyc.blocked and screening is not None and screening.list_version == version
    other, other_screening = await service.standing(tenant, "c2")
    assert not other.kyc.blocked and other_screening is not None and other_screening.status == "clear"
    assert await pool.fetchval("SELECT count(*) FROM sanctions_entries WHERE list_version < $1", version) == 0


def test_a_csv_without_the_opensanctions_columns_is_refused(tmp_path: Path) -> None:
    from kassa.shared.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="name"):
        sanctions.parse_csv(["id,schema,caption\n", "x,Person,Someone\n"])
    with pytest.raises(InvalidRequest, match="row 3"):
        sanctions.parse_csv(["id,schema,name\n", "x,Person,Someone\n", "y,Person,\n"])


async def test_racing_approval_and_rejection_of_one_review_let_exactly_one_win(
    pool: Pool, app_pool: Pool, service: ComplianceService
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 50_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    await service.set_rules(tenant, REVIEW_LARGE, "key_reviewer", "second look")
    held_payment = payment(tenant, "c1-a", 6_000)
    held = await service.pay(held_payment)
    assert held.review_id is not None
    results = await asyncio.gather(
        service.decide(tenant, held.review_id, True, "key_a", "looks fine"),
        service.decide(tenant, held.review_id, False, "key_b", "looks wrong"),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1, results
    lost = next(r for r in results if isinstance(r, BaseException))
    assert isinstance(lost, ReviewDecided)
    final = await service.review(tenant, held.review_id)
    assert final is not None and final.status == won[0].status
    expected = "posted" if final.status == "approved" else "voided"
    assert await transaction_status(pool, tenant, held_payment.command.id) == expected


async def test_concurrent_rule_changes_get_consecutive_versions(pool: Pool, service: ComplianceService) -> None:
    tenant = await shop_with_customer(pool, {})
    stored = await asyncio.gather(
        *(service.set_rules(tenant, REVIEW_LARGE, f"key_{n}", f"change {n}") for n in range(5))
    )
    assert sorted(r.version for r in stored) == [1, 2, 3, 4, 5]


@dataclass(frozen=True)
class KnownCustomer:
    id: str
    name: str
    country: str
    created_at: datetime


class Customers:
    def __init__(self, *known: KnownCustomer) -> None:
        self.known = {c.id: c for c in known}

    async def get_customer(self, tenant_id: str, customer_id: str) -> KnownCustomer:
        return self.known[customer_id]


async def test_a_customer_compliance_never_saw_is_screened_before_its_first_payment(
    pool: Pool, app_pool: Pool, service: ComplianceService
) -> None:
    await sanctions.load(pool, FIXTURES / "sanctions_small.csv")
    tenant = await shop_with_customer(pool, {"c1-a": 50_000, "c2-a": 50_000})
    guarded = ComplianceService(
        app_pool,
        service.ledger,
        customers=Customers(
            KnownCustomer("c1", "Viktor Bout", "DE", LONG_AGO), KnownCustomer("c2", "Anna Berg", "DE", LONG_AGO)
        ),
    )
    with pytest.raises(BlockedByPolicy):
        await guarded.pay(payment(tenant, "c1-a", 100))
    assert (await guarded.standing(tenant, "c1"))[0].kyc.blocked
    assert (await guarded.pay(payment(tenant, "c2-a", 100, customer="c2"))).outcome == "posted"
    assert (await guarded.standing(tenant, "c2"))[1] is not None

"""Reads and writes of the compliance tables (tenant-scoped by the caller's transaction)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kassa.compliance.domain.kyc import Kyc
from kassa.compliance.domain.limits import DEFAULT_LIMIT_SET, Limit, LimitSet
from kassa.compliance.domain.model import Review, Standing
from kassa.compliance.domain.rules import DEFAULT_RULES, Rule, RuleSet

if TYPE_CHECKING:
    from datetime import date, datetime

    from kassa.store.pool import Conn

_REVIEW_COLUMNS = (
    "tenant_id, id, transaction_id, customer_id, direction, amount, currency, status, rule_version,"
    " rule_ids, created_at, decided_at, reviewer, reason, product, product_id"
)


async def standing(conn: Conn, tenant_id: str, customer_id: str, lock: bool = False) -> Standing | None:
    row = await conn.fetchrow(
        "SELECT kyc_status, tier, requested_tier, blocked, blocked_reason, country, customer_since"
        " FROM compliance_customers WHERE tenant_id = $1 AND customer_id = $2" + (" FOR UPDATE" if lock else ""),
        tenant_id,
        customer_id,
    )
    if row is None:
        return None
    kyc = Kyc(row["kyc_status"], row["tier"], row["requested_tier"], row["blocked"])
    return Standing(tenant_id, customer_id, kyc, row["blocked_reason"], row["country"], row["customer_since"])


async def save_standing(conn: Conn, s: Standing) -> None:
    await conn.execute(
        "INSERT INTO compliance_customers (tenant_id, customer_id, kyc_status, tier, requested_tier, blocked,"
        " blocked_reason, country, customer_since) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (tenant_id, customer_id) DO UPDATE SET kyc_status = excluded.kyc_status,"
        " tier = excluded.tier, requested_tier = excluded.requested_tier, blocked = excluded.blocked,"
        " blocked_reason = excluded.blocked_reason, country = excluded.country, updated_at = now()",
        s.tenant_id,
        s.customer_id,
        s.kyc.status,
        s.kyc.tier,
        s.kyc.requested_tier,
        s.kyc.blocked,
        s.blocked_reason,
        s.country,
        s.customer_since,
    )


async def day_count(conn: Conn, tenant_id: str, customer_id: str, direction: str, currency: str, day: date) -> int:
    found = await conn.fetchval(
        "SELECT count_used FROM compliance_limit_usage WHERE tenant_id = $1 AND customer_id = $2"
        " AND direction = $3 AND currency = $4 AND period = 'day' AND period_start = $5",
        tenant_id,
        customer_id,
        direction,
        currency,
        day,
    )
    return int(found or 0)


async def payment_facts(
    conn: Conn, tenant_id: str, customer_id: str, direction: str, currency: str, day: date
) -> tuple[Standing | None, RuleSet, int, bool, LimitSet]:
    """Everything a payment's checks read, in one statement: the customer's standing, the
    tenant's latest rule set, its payments today in this direction and currency, whether it was
    ever screened, and the tenant's latest limits."""
    row = await conn.fetchrow(
        "SELECT c.kyc_status, c.tier, c.requested_tier, c.blocked, c.blocked_reason, c.country, c.customer_since,"
        " r.version, r.rules, l.version AS limits_version, l.limits,"
        " (SELECT count_used FROM compliance_limit_usage WHERE tenant_id = $1 AND customer_id = $2"
        "  AND direction = $3 AND currency = $4 AND period = 'day' AND period_start = $5) AS today,"
        " EXISTS (SELECT 1 FROM compliance_screenings WHERE tenant_id = $1 AND customer_id = $2) AS screened"
        " FROM (SELECT 1) AS one"
        " LEFT JOIN compliance_customers c ON c.tenant_id = $1 AND c.customer_id = $2"
        " LEFT JOIN LATERAL (SELECT version, rules FROM compliance_rule_sets WHERE tenant_id = $1"
        "  ORDER BY version DESC LIMIT 1) r ON true"
        " LEFT JOIN LATERAL (SELECT version, limits FROM compliance_limit_sets WHERE tenant_id = $1"
        "  ORDER BY version DESC LIMIT 1) l ON true",
        tenant_id,
        customer_id,
        direction,
        currency,
        day,
    )
    assert row is not None  # one row from (SELECT 1)
    found = None
    if row["kyc_status"] is not None:
        kyc = Kyc(row["kyc_status"], row["tier"], row["requested_tier"], row["blocked"])
        found = Standing(tenant_id, customer_id, kyc, row["blocked_reason"], row["country"], row["customer_since"])
    rules = DEFAULT_RULES if row["version"] is None else _rule_set(row["version"], row["rules"])
    limits = DEFAULT_LIMIT_SET if row["limits_version"] is None else _limit_set(row["limits_version"], row["limits"])
    return found, rules, int(row["today"] or 0), bool(row["screened"]), limits


# The same reads for many customers of one tenant: each customer's rows through its keys (a
# lateral lookup per customer with LIMIT, so that the planner can neither flatten it into a
# join nor hash a whole table of the tenant for it: docs/database.md, "Plans under the
# policy"), the tenant's latest rule and limit sets once, in the first row only.
_FACTS_MANY = (
    "SELECT u.customer_id, c.kyc_status, c.tier, c.requested_tier, c.blocked, c.blocked_reason, c.country,"
    " c.customer_since, d.count_used AS today, s.screened IS NOT NULL AS screened,"
    " r.version, r.rules, l.version AS limits_version, l.limits"
    " FROM unnest($2::text[]) WITH ORDINALITY AS u(customer_id, n)"
    " LEFT JOIN LATERAL (SELECT kyc_status, tier, requested_tier, blocked, blocked_reason, country, customer_since"
    "  FROM compliance_customers WHERE tenant_id = $1 AND customer_id = u.customer_id LIMIT 1) c ON true"
    " LEFT JOIN LATERAL (SELECT count_used FROM compliance_limit_usage WHERE tenant_id = $1"
    "  AND customer_id = u.customer_id AND direction = $3 AND currency = $4 AND period = 'day'"
    "  AND period_start = $5 LIMIT 1) d ON true"
    " LEFT JOIN LATERAL (SELECT true AS screened FROM compliance_screenings WHERE tenant_id = $1"
    "  AND customer_id = u.customer_id LIMIT 1) s ON true"
    " LEFT JOIN LATERAL (SELECT version, rules FROM compliance_rule_sets WHERE tenant_id = $1 AND u.n = 1"
    "  ORDER BY version DESC LIMIT 1) r ON true"
    " LEFT JOIN LATERAL (SELECT version, limits FROM compliance_limit_sets WHERE tenant_id = $1 AND u.n = 1"
    "  ORDER BY version DESC LIMIT 1) l ON true"
    " ORDER BY u.n"
)


async def payment_facts_many(
    conn: Conn, tenant_id: str, customer_ids: list[str], direction: str, currency: str, day: date
) -> dict[str, tuple[Standing | None, RuleSet, int, bool, LimitSet]]:
    """`payment_facts` of several customers of one tenant in one statement (the reads of
    concurrent payments, coalesced by their caller), by customer id."""
    if not customer_ids:
        return {}
    rows = await conn.fetch(_FACTS_MANY, tenant_id, customer_ids, direction, currency, day)
    first = rows[0]
    rules = DEFAULT_RULES if first["version"] is None else _rule_set(first["version"], first["rules"])
    limits = (
        DEFAULT_LIMIT_SET if first["limits_version"] is None else _limit_set(first["limits_version"], first["limits"])
    )
    facts: dict[str, tuple[Standing | None, RuleSet, int, bool, LimitSet]] = {}
    for row in rows:
        customer_id = row["customer_id"]
        found = None
        if row["kyc_status"] is not None:
            kyc = Kyc(row["kyc_status"], row["tier"], row["requested_tier"], row["blocked"])
            found = Standing(tenant_id, customer_id, kyc, row["blocked_reason"], row["country"], row["customer_since"])
        facts[customer_id] = (found, rules, int(row["today"] or 0), bool(row["screened"]), limits)
    return facts


def _limit_set(version: int, limits: Any) -> LimitSet:
    data = json.loads(limits) if isinstance(limits, str) else limits
    return LimitSet(version, tuple(Limit(d["tier"], d["direction"], d["window"], d["metric"], d["max"]) for d in data))


async def limit_set(conn: Conn, tenant_id: str) -> LimitSet:
    """The tenant's latest limit overrides (DEFAULT_LIMIT_SET before any change)."""
    row = await conn.fetchrow(
        "SELECT version, limits FROM compliance_limit_sets WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
        tenant_id,
    )
    return DEFAULT_LIMIT_SET if row is None else _limit_set(row["version"], row["limits"])


def plain_limits(limits: tuple[Limit, ...]) -> list[dict[str, Any]]:
    return [
        {"tier": x.tier, "direction": x.direction, "window": x.window, "metric": x.metric, "max": x.max} for x in limits
    ]


async def insert_limit_set(conn: Conn, tenant_id: str, limits: LimitSet, actor: str, reason: str) -> None:
    await conn.execute(
        "INSERT INTO compliance_limit_sets (tenant_id, version, limits, changed_by, reason)"
        " VALUES ($1, $2, $3::jsonb, $4, $5)",
        tenant_id,
        limits.version,
        json.dumps(plain_limits(limits.overrides)),
        actor,
        reason,
    )


def _rule_set(version: int, rules: Any) -> RuleSet:
    data = json.loads(rules) if isinstance(rules, str) else rules
    return RuleSet(version, tuple(Rule(r["id"], r["condition"], r["action"]) for r in data))


async def rule_set(conn: Conn, tenant_id: str, version: int | None = None) -> RuleSet:
    """The tenant's latest rule set (or the given version); DEFAULT_RULES before any change."""
    row = await conn.fetchrow(
        "SELECT version, rules FROM compliance_rule_sets WHERE tenant_id = $1 AND ($2::integer IS NULL OR version = $2)"
        " ORDER BY version DESC LIMIT 1",
        tenant_id,
        version,
    )
    return DEFAULT_RULES if row is None else _rule_set(row["version"], row["rules"])


async def insert_rule_set(conn: Conn, tenant_id: str, rules: RuleSet, actor: str, reason: str) -> datetime:
    data = [{"id": r.id, "condition": r.condition, "action": r.action} for r in rules.rules]
    created: datetime = await conn.fetchval(
        "INSERT INTO compliance_rule_sets (tenant_id, version, rules, changed_by, reason)"
        " VALUES ($1, $2, $3::jsonb, $4, $5) RETURNING created_at",
        tenant_id,
        rules.version,
        json.dumps(data),
        actor,
        reason,
    )
    return created


def _review(row: Any) -> Review:
    return Review(**{**dict(row), "rule_ids": tuple(row["rule_ids"])})


async def review(conn: Conn, tenant_id: str, review_id: str) -> Review | None:
    row = await conn.fetchrow(
        f"SELECT {_REVIEW_COLUMNS} FROM compliance_reviews WHERE tenant_id = $1 AND id = $2", tenant_id, review_id
    )
    return None if row is None else _review(row)


async def reviews(conn: Conn, tenant_id: str, status: str | None, after: str | None, limit: int) -> list[Review]:
    """Oldest first (a queue), by id after the cursor."""
    rows = await conn.fetch(
        f"SELECT {_REVIEW_COLUMNS} FROM compliance_reviews WHERE tenant_id = $1"
        " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR id > $3) ORDER BY id LIMIT $4",
        tenant_id,
        status,
        after,
        limit,
    )
    return [_review(r) for r in rows]

"""The operator's sanctions list: loading an OpenSanctions CSV, screening customers against it.

The list is the OpenSanctions "simple" CSV (`targets.simple.csv`): one row per listed entity with
the columns `id, schema, name, aliases, birth_date, countries, addresses, identifiers,
sanctions, phones, emails, dataset, first_seen, last_seen, last_change`, multi-valued cells
separated by `;`. kassa needs `id`, `schema` and `name`; `aliases` and `countries` are kept,
the rest is ignored. Each load is a new list version that replaces the previous one in one
transaction, and then every known customer is screened again against it.

A hit (domain: matching.py) blocks the customer: its standing gets `blocked` with the listed
entry's id as the reason (no personal data), which disables every capability and makes the
default `blocked_customer` rule refuse its payments. Operators see hits in the screening rows
(`GET /v1/compliance/customers/{id}`). A later clear screening does not lift a block by itself:
a person decides that (the block records why it was set).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kassa.compliance.adapters import rows
from kassa.compliance.domain.kyc import Kyc
from kassa.compliance.domain.model import Screening, Standing
from kassa.compliance.matching import ListedName, SanctionsIndex
from kassa.shared.errors import InvalidRequest
from kassa.shared.limits import page_limit_max, sanctions_list_entries_max, sanctions_name_chars_max
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime
    from pathlib import Path

    from kassa.store.pool import Conn, Pool

REQUIRED_COLUMNS = ("id", "schema", "name")
_SEPARATOR = ";"


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    schema: str
    name: str
    aliases: tuple[str, ...]
    countries: tuple[str, ...]


class CustomerLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...


class CustomerDirectory(Protocol):
    """Where screening reads customers' names (identity's CustomerService)."""

    async def list_customers(self, tenant_id: str, after_id: str | None, limit: int) -> list[CustomerLike]: ...


def _many(cell: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (cell or "").split(_SEPARATOR) if v.strip())


def parse_csv(lines: Iterable[str]) -> list[Entry]:
    """Entries of an OpenSanctions simple CSV. Raises InvalidRequest naming the row of a bad one."""
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidRequest(f"the sanctions CSV lacks the column(s) {', '.join(missing)}")
    entries: list[Entry] = []
    for number, row in enumerate(reader, start=2):
        if len(entries) >= sanctions_list_entries_max:
            raise InvalidRequest(f"the sanctions CSV has more than {sanctions_list_entries_max} rows")
        names = [row.get("name") or "", *_many(row.get("aliases"))]
        if not all(row.get(c) for c in REQUIRED_COLUMNS) or any(len(n) > sanctions_name_chars_max for n in names):
            raise InvalidRequest(
                f"sanctions CSV row {number}: id, schema and a name of at most {sanctions_name_chars_max} characters"
            )
        entries.append(
            Entry(row["id"], row["schema"], row["name"], _many(row.get("aliases")), _many(row.get("countries")))
        )
    return entries


async def load(pool: Pool, path: Path) -> tuple[int, int]:
    """Load a CSV as the new list version (run on the owner's pool: the list is shared by every
    tenant). Returns (version, entry count). Raises InvalidRequest for a malformed file."""
    with path.open(newline="", encoding="utf-8") as handle:
        entries = parse_csv(handle)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kassa.sanctions_load'))")
        version = int(await conn.fetchval("SELECT coalesce(max(version), 0) + 1 FROM sanctions_lists"))
        await conn.execute(
            "INSERT INTO sanctions_lists (version, source, entry_count) VALUES ($1, $2, $3)",
            version,
            path.name,
            len(entries),
        )
        await conn.copy_records_to_table(
            "sanctions_entries",
            records=[(version, e.id, e.schema, e.name, list(e.aliases), list(e.countries)) for e in entries],
            columns=["list_version", "entry_id", "schema", "name", "aliases", "countries"],
        )
        await conn.execute("DELETE FROM sanctions_lists WHERE version < $1", version)
    return version, len(entries)


# The current list's index, per process: loaded once per list version (a version never changes).
_INDEX: dict[int, SanctionsIndex] = {}


async def listed_names(conn: Conn) -> tuple[int, SanctionsIndex]:
    """The current list version and the index of every name and alias on it (version 0: none)."""
    version = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM sanctions_lists"))
    index = _INDEX.get(version)
    if index is None:
        found = await conn.fetch(
            "SELECT entry_id, name, aliases FROM sanctions_entries WHERE list_version = $1 ORDER BY entry_id", version
        )
        index = SanctionsIndex.build([ListedName(r["entry_id"], n) for r in found for n in (r["name"], *r["aliases"])])
        _INDEX.clear()
        _INDEX[version] = index
    return version, index


async def screen_customer(
    pool: Pool, tenant_id: str, customer_id: str, name: str, listed: tuple[int, SanctionsIndex], now: datetime
) -> Screening:
    """Screen one name; store the result; block the customer on a hit. The name is compared in
    memory and stored nowhere here."""
    version, index = listed
    matches = tuple(
        {"entry_id": m.entry_id, "listed_name": m.listed_name, "score": round(m.score, 1)} for m in index.screen(name)
    )
    result = Screening(customer_id, version, "hit" if matches else "clear", matches)
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO compliance_screenings (tenant_id, customer_id, list_version, status, matches)"
            " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (tenant_id, customer_id) DO UPDATE SET"
            " list_version = excluded.list_version, status = excluded.status, matches = excluded.matches,"
            " screened_at = now()",
            tenant_id,
            customer_id,
            version,
            result.status,
            json.dumps(list(matches)),
        )
        standing = await rows.standing(conn, tenant_id, customer_id, lock=True)
        if standing is None:
            standing = Standing(tenant_id, customer_id, Kyc(), None, None, now)
            await rows.save_standing(conn, standing)
        if matches and not standing.kyc.blocked:
            kyc = standing.kyc
            blocked = Kyc(kyc.status, kyc.tier, kyc.requested_tier, blocked=True)
            reason = f"sanctions hit: {matches[0]['entry_id']} (list version {version})"[:256]
            await rows.save_standing(
                conn, Standing(tenant_id, customer_id, blocked, reason, standing.country, standing.customer_since)
            )
    return result


async def rescreen(owner_pool: Pool, pool: Pool, directory: CustomerDirectory, now: datetime) -> dict[str, int]:
    """Screen every customer of every tenant that compliance knows against the current list.
    `owner_pool` only finds the tenants (the one cross-tenant read); each tenant's customers are
    read and screened in that tenant's own scope. Returns counts of `screened` and `hits`."""
    async with owner_pool.acquire() as conn:
        tenants = [r["tenant_id"] for r in await conn.fetch("SELECT DISTINCT tenant_id FROM compliance_customers")]
        listed = await listed_names(conn)
    counts = {"screened": 0, "hits": 0}
    for tenant_id in tenants:
        after: str | None = None
        while True:
            page = await directory.list_customers(tenant_id, after, page_limit_max)
            for customer in page:
                result = await screen_customer(pool, tenant_id, customer.id, customer.name, listed, now)
                counts["screened"] += 1
                counts["hits"] += result.status == "hit"
            if len(page) < page_limit_max:
                break
            after = page[-1].id
    return counts

"""KYC through the sandbox provider's signed callback; events without personal data; documents found by keyed hash."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest

from kassa.compliance import ComplianceService, KycTransitionInvalid
from kassa.compliance.adapters.sandbox_kyc import SIGNATURE_HEADER, SandboxKycProvider
from kassa.compliance.domain.verification import KycResult, Submission, callback_signature_valid
from kassa.compliance.errors import KycDataRefused, KycUnavailable
from kassa.events.validation import validate_event
from kassa.ledger import Batcher, LedgerService
from kassa.shared.errors import InvalidRequest
from support.compliance import AuditedCompliance, TestVault
from support.http_sink import HttpSink
from support.ledger import outbox_envelopes
from support.product import open_shop

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
SECRET = b"sandbox-test-secret"
PERSON = Submission(date(1980, 2, 29), "Hauptstrasse 5, 10115 Berlin", "X7Q-4481-ZP")
SECRETS = ("1980-02-29", "Hauptstrasse", "Berlin", "X7Q4481ZP", "X7Q-4481-ZP", "x7q4481zp")


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with HttpSink() as running:
        yield running


@pytest.fixture
async def kyc(app_pool: Pool, sink: HttpSink) -> AsyncIterator[tuple[AuditedCompliance, SandboxKycProvider]]:
    batcher = Batcher(app_pool)
    batcher.start()
    provider = SandboxKycProvider(sink.url + "/v1/kyc/callbacks/sandbox", SECRET)
    audited: list[dict[str, Any]] = []

    async def audit(conn: Any, **record: Any) -> None:
        audited.append(record)

    service = AuditedCompliance(
        app_pool, LedgerService(app_pool, batcher), audit=audit, vault=TestVault(), kyc_provider=provider
    )
    service.audited = audited
    try:
        yield service, provider
    finally:
        await provider.drain()
        await batcher.stop()


async def callback_result(sink: HttpSink, provider: SandboxKycProvider, count: int = 1) -> list[KycResult]:
    """Wait for the sandbox's callbacks, check their signatures, and decode them."""
    await provider.drain()
    received = sink.received()
    assert len(received) == count
    results = []
    for request in received:
        assert callback_signature_valid(
            SECRET, request.headers[SIGNATURE_HEADER.lower()], request.body, int(time.time()), 300
        )
        assert not callback_signature_valid(
            b"other", request.headers[SIGNATURE_HEADER.lower()], request.body, int(time.time()), 300
        )
        results.append(KycResult(**json.loads(request.body)))
    return results


async def events_of(pool: Pool, tenant: str) -> list[dict[str, Any]]:
    found = await pool.fetch("SELECT type, data FROM outbox WHERE tenant_id = $1 ORDER BY id", tenant)
    return [
        {"type": r["type"], "data": json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]} for r in found
    ]


async def test_a_verified_customer_reaches_the_tier_with_a_kyc_completed_event(
    pool: Pool, kyc: tuple[ComplianceService, SandboxKycProvider], sink: HttpSink
) -> None:
    service, provider = kyc
    tenant = await open_shop(pool, {})
    started = await service.kyc.start(tenant, "c1", 2, PERSON, datetime.now(UTC))
    assert (started.status, started.requested_tier) == ("pending", 2)
    standing, _ = await service.standing(tenant, "c1")
    assert standing.kyc.status == "pending"
    with pytest.raises(KycTransitionInvalid):  # one verification at a time
        await service.kyc.start(tenant, "c1", 2, PERSON, datetime.now(UTC))

    [result] = await callback_result(sink, provider)
    done = await service.kyc.apply_result(result)
    assert (done.status, done.reason) == ("verified", "tier_2_checks_passed")
    again = await service.kyc.apply_result(result)  # a redelivered callback applies once
    assert again == done
    standing, _ = await service.standing(tenant, "c1")
    assert (standing.kyc.status, standing.kyc.tier) == ("verified", 2)
    assert {c.status for c in standing.kyc.capabilities()} == {"enabled"}
    events = [e for e in await events_of(pool, tenant) if e["type"].startswith("Kyc")]
    assert [(e["type"], e["data"]["tier"], e["data"]["kyc_status"]) for e in events] == [
        ("KycCompleted", 2, "verified")
    ]


async def test_magic_documents_force_rejection_or_an_operators_review(
    pool: Pool, kyc: tuple[AuditedCompliance, SandboxKycProvider], sink: HttpSink
) -> None:
    service, provider = kyc
    tenant = await open_shop(pool, {})
    await service.kyc.start(
        tenant, "c1", 1, Submission(date(1970, 1, 1), "Somewhere 1", "REJECT-001"), datetime.now(UTC)
    )
    await service.kyc.start(
        tenant, "c2", 1, Submission(date(1970, 1, 1), "Somewhere 2", "REVIEW-002"), datetime.now(UTC)
    )
    results = {r.outcome: r for r in await callback_result(sink, provider, 2)}
    rejected = await service.kyc.apply_result(results["rejected"])
    assert (rejected.status, rejected.reason) == ("rejected", "document_rejected")
    assert (await service.standing(tenant, "c1"))[0].kyc.status == "rejected"
    review = await service.kyc.apply_result(results["review"])
    assert review.status == "review" and review.decided_at is None
    assert (await service.standing(tenant, "c2"))[0].kyc.status == "pending"

    decided = await service.kyc.apply_result(
        KycResult(tenant, review.id, "verified", "passport seen in branch"), "key_officer"
    )
    assert decided.status == "verified"
    assert (await service.standing(tenant, "c2"))[0].kyc.tier == 1
    assert [a["action"] for a in service.audited] == ["kyc.overridden"]
    types = [e["type"] for e in await events_of(pool, tenant) if e["type"].startswith("Kyc")]
    assert types == ["KycRejected", "KycCompleted"]


async def test_a_document_is_found_by_its_keyed_hash_and_stored_only_sealed(
    pool: Pool, kyc: tuple[ComplianceService, SandboxKycProvider]
) -> None:
    service, _ = kyc
    tenant = await open_shop(pool, {})
    first = await service.kyc.start(tenant, "c1", 1, PERSON, datetime.now(UTC))
    await service.kyc.start(tenant, "c2", 1, Submission(date(1990, 5, 5), "Elsewhere 9", "OTHER123"), datetime.now(UTC))
    found = await service.kyc.find_by_document(tenant, "x7q 4481 zp")  # spacing and case do not matter
    assert [v.id for v in found] == [first.id]
    row = await pool.fetchrow("SELECT * FROM kyc_verifications WHERE tenant_id = $1 AND id = $2", tenant, first.id)
    assert row is not None
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert not any(s.encode() in stored for s in SECRETS)
    assert TestVault().open(tenant, f"kyc:{first.id}:document", row["document_sealed"]) == b"X7Q4481ZP"
    other_tenant = await open_shop(pool, {})
    assert await service.kyc.find_by_document(other_tenant, "X7Q4481ZP") == []


async def test_bad_personal_data_is_refused_without_echoing_it(
    pool: Pool, kyc: tuple[ComplianceService, SandboxKycProvider]
) -> None:
    service, _ = kyc
    tenant = await open_shop(pool, {})
    for bad in (
        Submission(date(2020, 1, 1), "Hauptstrasse 5", "X7Q4481ZP"),  # a child
        Submission(date(1980, 1, 1), "Hauptstrasse\n5", "X7Q4481ZP"),
        Submission(date(1980, 1, 1), "Hauptstrasse 5", "X7Q/4481ZP"),
    ):
        with pytest.raises((InvalidRequest, KycDataRefused)) as caught:
            await service.kyc.start(tenant, "c1", 1, bad, datetime.now(UTC))
        assert not any(s in str(caught.value) + repr(caught.value.extra) for s in (*SECRETS, "2020-01-01"))
    assert "X7Q" not in repr(PERSON) and "Berlin" not in repr(PERSON)
    assert (await service.standing(tenant, "c1"))[0].kyc.status == "unverified"


async def test_without_a_vault_kyc_is_unavailable(pool: Pool, app_pool: Pool) -> None:
    service = ComplianceService(app_pool, LedgerService(app_pool, Batcher(app_pool)))
    with pytest.raises(KycUnavailable):
        await service.kyc.start(await open_shop(pool, {}), "c1", 1, PERSON, datetime.now(UTC))


async def test_personal_data_never_reaches_logs_events_errors_or_callbacks(
    pool: Pool, kyc: tuple[AuditedCompliance, SandboxKycProvider], sink: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything a KYC flow emits, captured and searched for the values the customer typed in."""
    service, provider = kyc
    caplog.set_level(logging.DEBUG)
    tenant = await open_shop(pool, {})
    emitted: list[str] = []
    await service.kyc.start(tenant, "c1", 2, PERSON, datetime.now(UTC))
    try:
        await service.kyc.start(tenant, "c1", 2, PERSON, datetime.now(UTC))
    except KycTransitionInvalid as exc:
        emitted += [str(exc), repr(exc.extra)]
    try:
        await service.kyc.start(
            tenant,
            "c9",
            1,
            Submission(PERSON.birth_date, PERSON.address + "\x00", PERSON.document_number),
            datetime.now(UTC),
        )
    except InvalidRequest as exc:
        emitted += [str(exc), repr(exc.extra)]
    [result] = await callback_result(sink, provider)
    emitted += [r.body.decode() + json.dumps(r.headers) for r in sink.received()]
    done = await service.kyc.apply_result(result)
    emitted.append(repr(done))
    standing = await service.standing(tenant, "c1")
    emitted.append(repr(standing))
    emitted += [json.dumps(e, default=str) for e in await events_of(pool, tenant)]
    emitted += [json.dumps(a, default=str) for a in service.audited]
    emitted += [record.getMessage() + repr(record.args) + (record.exc_text or "") for record in caplog.records]
    emitted.append(caplog.text)
    everything = "\n".join(emitted)
    assert "KycCompleted" in everything and "pending" in everything  # the capture did capture
    leaked = [s for s in SECRETS if s in everything]
    assert leaked == []


async def test_kyc_events_validate_against_their_schemas(
    pool: Pool, kyc: tuple[ComplianceService, SandboxKycProvider], sink: HttpSink
) -> None:
    service, provider = kyc
    tenant = await open_shop(pool, {})
    await service.kyc.start(tenant, "c1", 1, PERSON, datetime.now(UTC))
    await service.kyc.start(tenant, "c2", 2, Submission(date(1970, 1, 1), "Somewhere 2", "REJECT-9"), datetime.now(UTC))
    for result in await callback_result(sink, provider, 2):
        await service.kyc.apply_result(result)
    events = [e for e in await outbox_envelopes(pool, tenant) if e.type.startswith("Kyc")]
    assert sorted(e.type for e in events) == ["KycCompleted", "KycRejected"]
    for event in events:
        validate_event(event)

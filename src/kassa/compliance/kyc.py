"""KYC verification: submit personal data, hand it to the provider, apply its signed result.

Personal data (date of birth, address, document number) is sealed under the tenant's data key
before it is written (`PersonalDataVault`, identity's envelope encryption) and leaves this
module only to the provider. Events (`KycCompleted`, `KycRejected`), errors, log lines and
audit records carry ids, tiers and reason codes, never a value the customer typed in. A keyed
hash of the document number (`document_hash`) finds earlier verifications with the same
document without decrypting anything.

Flow: `start` moves the customer's KYC to pending (domain/kyc.py) and writes the sealed
verification in one transaction, then submits to the provider. The provider's callback
(`apply_result`) moves it to verified or rejected, with its event in the outbox in the same
transaction; a `review` result leaves it pending for an operator (`override`, audited).
A result for a verification already decided is ignored, so redelivered callbacks apply once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kassa.compliance.adapters import rows
from kassa.compliance.domain.kyc import Kyc
from kassa.compliance.domain.model import Standing
from kassa.compliance.domain.verification import (
    KycResult,
    Submission,
    VerificationRequest,
    check_submission,
    document_hash,
)
from kassa.compliance.errors import KycUnavailable, VerificationNotFound
from kassa.events.outbox import NewEvent, write_events
from kassa.shared.ids import new_id
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.compliance.domain.verification import KycProvider
    from kassa.compliance.payments import Audit
    from kassa.store.pool import Conn, Pool


class PersonalDataVault(Protocol):
    """Seals personal data under the tenant's data key (identity's envelope encryption)."""

    async def seal(self, conn: Conn, tenant_id: str, purpose: str, plaintext: bytes) -> bytes: ...

    async def search_key(self, conn: Conn, tenant_id: str) -> bytes:
        """The tenant's key for searchable hashes (derived from its data key, never stored)."""
        ...


@dataclass(frozen=True, slots=True)
class Verification:
    tenant_id: str
    id: str
    customer_id: str
    provider: str
    requested_tier: int
    status: str
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


_COLUMNS = "tenant_id, id, customer_id, provider, requested_tier, status, reason, created_at, decided_at"


async def _get(conn: Conn, tenant_id: str, verification_id: str, lock: bool = False) -> Verification | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM kyc_verifications WHERE tenant_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        tenant_id,
        verification_id,
    )
    return None if row is None else Verification(**dict(row))


class KycFlow:
    def __init__(
        self, pool: Pool, vault: PersonalDataVault | None, provider: KycProvider | None, audit: Audit | None
    ) -> None:
        self.pool = pool
        self.vault = vault
        self.provider = provider
        self.audit = audit

    async def start(
        self, tenant_id: str, customer_id: str, tier: int, submission: Submission, now: datetime
    ) -> Verification:
        """Ask the provider to verify a customer for `tier`. Raises InvalidRequest (bad personal
        data, never echoed), KycTransitionInvalid (already pending, or the tier is not above
        the current one), KycUnavailable."""
        if self.vault is None or self.provider is None:
            raise KycUnavailable("no KYC provider or personal-data encryption is configured")
        clean = check_submission(submission, now.date())
        verification_id = "kyc_" + new_id().replace("-", "")
        async with tenant_transaction(self.pool, tenant_id) as conn:
            standing = await rows.standing(conn, tenant_id, customer_id, lock=True)
            if standing is None:
                standing = Standing(tenant_id, customer_id, Kyc(), None, None, now)
            pending = standing.kyc.transition("pending", tier)  # type: ignore[arg-type]
            await rows.save_standing(conn, _with(standing, pending))
            sealed = [
                await self.vault.seal(conn, tenant_id, f"kyc:{verification_id}:{name}", value.encode())
                for name, value in (
                    ("birth_date", clean.birth_date.isoformat()),
                    ("address", clean.address),
                    ("document", clean.document_number),
                )
            ]
            digest = document_hash(await self.vault.search_key(conn, tenant_id), clean.document_number)
            await conn.execute(
                "INSERT INTO kyc_verifications (tenant_id, id, customer_id, provider, requested_tier,"
                " birth_date_sealed, address_sealed, document_sealed, document_hash)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                tenant_id,
                verification_id,
                customer_id,
                self.provider.name,
                tier,
                *sealed,
                digest,
            )
            found = await _get(conn, tenant_id, verification_id)
        await self.provider.submit(VerificationRequest(tenant_id, verification_id, tier, clean))
        assert found is not None
        return found

    async def get(self, tenant_id: str, verification_id: str) -> Verification:
        """Raises VerificationNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await _get(conn, tenant_id, verification_id)
        if found is None:
            raise VerificationNotFound(f"no verification {verification_id}")
        return found

    async def find_by_document(self, tenant_id: str, document_number: str) -> list[Verification]:
        """Verifications of this tenant made with this document (by keyed hash). Raises KycUnavailable."""
        if self.vault is None:
            raise KycUnavailable("no personal-data encryption is configured")
        async with tenant_transaction(self.pool, tenant_id) as conn:
            digest = document_hash(await self.vault.search_key(conn, tenant_id), document_number)
            found = await conn.fetch(
                f"SELECT {_COLUMNS} FROM kyc_verifications WHERE tenant_id = $1 AND document_hash = $2 ORDER BY id",
                tenant_id,
                digest,
            )
        return [Verification(**dict(r)) for r in found]

    async def apply_result(self, result: KycResult, decided_by: str | None = None) -> Verification:
        """Apply a provider's (or an operator's) result once. Raises VerificationNotFound."""
        tenant_id = result.tenant_id
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await _get(conn, tenant_id, result.verification_id, lock=True)
            if found is None:
                raise VerificationNotFound(f"no verification {result.verification_id}")
            if found.status in ("verified", "rejected") or (found.status == "review" and result.outcome == "review"):
                return found  # decided already: a redelivered callback changes nothing
            decided = await conn.fetchrow(
                "UPDATE kyc_verifications SET status = $3, reason = $4, decided_by = $5,"
                " decided_at = CASE WHEN $3 = 'review' THEN NULL ELSE now() END"
                f" WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}",
                tenant_id,
                found.id,
                result.outcome,
                result.reason,
                decided_by or found.provider,
            )
            assert decided is not None  # the row is locked above
            after = Verification(**dict(decided))
            if result.outcome != "review":
                await self._decide_standing(conn, after, result, decided_by)
        return after

    async def _decide_standing(
        self, conn: Conn, verification: Verification, result: KycResult, decided_by: str | None
    ) -> None:
        standing = await rows.standing(conn, verification.tenant_id, verification.customer_id, lock=True)
        assert standing is not None  # written by start()
        tier = verification.requested_tier if result.outcome == "verified" else None
        kyc = standing.kyc.transition(result.outcome, tier)  # type: ignore[arg-type]
        await rows.save_standing(conn, _with(standing, kyc))
        data: dict[str, Any] = {
            "customer_id": verification.customer_id,
            "verification_id": verification.id,
            "kyc_status": kyc.status,
            "tier": kyc.tier,
            "reason": result.reason,
            "decided_at": verification.decided_at,
        }
        kind = "KycCompleted" if result.outcome == "verified" else "KycRejected"
        assert verification.decided_at is not None
        event = NewEvent(verification.tenant_id, kind, "customer", verification.customer_id, data)
        await write_events(conn, [event], verification.decided_at)
        if decided_by is not None and self.audit is not None:
            await self.audit(
                conn,
                tenant_id=verification.tenant_id,
                actor_key_id=decided_by,
                action="kyc.overridden",
                target_type="kyc_verification",
                target_id=verification.id,
                before={"status": "review"},
                after={"status": result.outcome, "reason": result.reason, "tier": kyc.tier},
            )


def _with(standing: Standing, kyc: Kyc) -> Standing:
    return Standing(
        standing.tenant_id,
        standing.customer_id,
        kyc,
        standing.blocked_reason,
        standing.country,
        standing.customer_since,
    )

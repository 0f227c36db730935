"""Notifications service: webhook endpoints, their deliveries, and the notification log.

Every function takes the caller's tenant id and filters on it in SQL; another tenant's endpoint
is indistinguishable from a missing one (WebhookEndpointNotFound), so ids cannot be probed.
Each runs in a transaction scoped to that tenant (`store.tenancy`), so row-level security hides
every other tenant's rows even from a query that forgot its filter.

Signing secrets are generated here, stored sealed under the master key (`keys`), and returned
in plaintext only by create and rotate. With an Idempotency-Key those two store a response
rendered without the secret, so a replay never repeats a secret, current or since rotated.
Endpoint URLs must not reach internal addresses unless `allow_private`
(KASSA_WEBHOOK_ALLOW_PRIVATE) is set, and never link-local or metadata ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast, overload

from kassa.notifications.adapters import delivery_rows, endpoint_rows, notification_rows, resolver
from kassa.notifications.domain.endpoints import Endpoint, validate_event_types, validate_url
from kassa.notifications.domain.model import Delivery, Notification, Page
from kassa.notifications.domain.signing import new_secret
from kassa.notifications.errors import WebhookEndpointLimitReached, WebhookEndpointNotFound
from kassa.shared.clock import utcnow
from kassa.shared.errors import InvalidRequest
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant
from kassa.shared.limits import (
    page_limit_max,
    webhook_endpoints_per_tenant_max,
    webhook_secret_rotation_grace_s,
)
from kassa.store import idempotency
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import asyncpg

    from kassa.notifications.adapters import Conn
    from kassa.notifications.adapters.resolver import Resolver
    from kassa.shared.crypto import KeyRing
    from kassa.store.idempotency import IdemClaim, Replay

__all__ = ["EndpointWithSecret", "NotificationService"]

_MAX_SEQ = 2**63 - 1


def _plain(conn: Conn) -> asyncpg.Connection[Any]:
    # store.idempotency is typed for plain connections; a pooled proxy behaves the same.
    return cast("asyncpg.Connection[Any]", conn)


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    """An endpoint together with its signing secret: returned only on create and rotate."""

    endpoint: Endpoint
    secret: str
    previous_secret_expires_at: datetime | None = None


def _check_limit(limit: int) -> None:
    invariant(1 <= limit <= page_limit_max, "page limits are validated at the edge")


class NotificationService:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        keys: KeyRing,
        *,
        allow_private: bool = False,
        resolve: Resolver = resolver.system_resolve,
    ) -> None:
        self.pool = pool
        self.keys = keys
        self.allow_private = allow_private
        self.resolve = resolve

    # Without an Idempotency-Key claim there is nothing to replay: callers get the endpoint itself.
    @overload
    async def create_endpoint(
        self, tenant_id: str, url: str, event_types: Sequence[str], claim: None = None, render: None = None
    ) -> EndpointWithSecret: ...

    @overload
    async def create_endpoint(
        self,
        tenant_id: str,
        url: str,
        event_types: Sequence[str],
        claim: IdemClaim | None,
        render: Callable[[EndpointWithSecret], tuple[int, bytes]] | None,
    ) -> EndpointWithSecret | Replay: ...

    async def create_endpoint(
        self,
        tenant_id: str,
        url: str,
        event_types: Sequence[str],
        claim: IdemClaim | None = None,
        render: Callable[[EndpointWithSecret], tuple[int, bytes]] | None = None,
    ) -> EndpointWithSecret | Replay:
        """Register an endpoint with a fresh secret. With an Idempotency-Key `claim`, `render`
        gives the response to store (rendered without the secret), and a retry returns it as a
        Replay instead of registering a second endpoint. Raises WebhookUrlInvalid,
        WebhookUrlTargetRefused, WebhookEventTypesInvalid (all checked before the claim, so no
        insert can fail on a constraint with the new secret in its row), IdempotencyKeyReused,
        IdempotencyKeyInFlight, WebhookEndpointLimitReached."""
        invariant((claim is None) or (render is not None), "an idempotent create renders its response")
        normalised = validate_url(url, self.allow_private)
        await resolver.check_registration(normalised, self.allow_private, self.resolve)
        now = utcnow()
        endpoint = Endpoint(
            tenant_id=tenant_id,
            id=new_id(),
            url=normalised,
            event_types=validate_event_types(event_types),
            created_at=now,
            updated_at=now,
        )
        secret = new_secret()
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await idempotency.claim_one(_plain(conn), claim)
            if found is not None:
                return found
            await endpoint_rows.lock_tenant_endpoints(conn, tenant_id)
            if await endpoint_rows.count_live(conn, tenant_id) >= webhook_endpoints_per_tenant_max:
                # Not stored under the key: after deleting an endpoint, the same request may succeed.
                raise WebhookEndpointLimitReached(
                    f"a tenant has at most {webhook_endpoints_per_tenant_max} webhook endpoints"
                )
            row = await endpoint_rows.insert(conn, endpoint, secret, self.keys)
            created = EndpointWithSecret(row.endpoint, secret)
            if claim is not None and render is not None:
                status, body = render(created)
                await idempotency.complete(_plain(conn), [(claim, status, body)])
        invariant(row.endpoint.tenant_id == tenant_id, "an endpoint belongs to its creator's tenant")
        return created

    async def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        """Raises WebhookEndpointNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            row = await endpoint_rows.get_live(conn, tenant_id, endpoint_id)
        if row is None:
            raise WebhookEndpointNotFound(f"no webhook endpoint '{endpoint_id}'")
        return row.endpoint

    async def list_endpoints(self, tenant_id: str, after_seq: int | None, limit: int) -> Page[Endpoint]:
        """Live endpoints, oldest first. Raises nothing."""
        _check_limit(limit)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            rows = await endpoint_rows.list_live(conn, tenant_id, after_seq or 0, limit + 1)
        page = rows[:limit]
        has_more = len(rows) > limit
        return Page([r.endpoint for r in page], has_more, page[-1].seq if has_more else None)

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        """Stop delivering to an endpoint and cancel its pending deliveries. The delivery history
        is kept but no longer listed. Raises WebhookEndpointNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            deleted = await endpoint_rows.soft_delete(conn, tenant_id, endpoint_id, utcnow())
        if not deleted:
            raise WebhookEndpointNotFound(f"no webhook endpoint '{endpoint_id}'")

    @overload
    async def rotate_secret(
        self,
        tenant_id: str,
        endpoint_id: str,
        grace_s: int = webhook_secret_rotation_grace_s,
        claim: None = None,
        render: None = None,
    ) -> EndpointWithSecret: ...

    @overload
    async def rotate_secret(
        self,
        tenant_id: str,
        endpoint_id: str,
        grace_s: int,
        claim: IdemClaim | None,
        render: Callable[[EndpointWithSecret], tuple[int, bytes]] | None,
    ) -> EndpointWithSecret | Replay: ...

    async def rotate_secret(
        self,
        tenant_id: str,
        endpoint_id: str,
        grace_s: int = webhook_secret_rotation_grace_s,
        claim: IdemClaim | None = None,
        render: Callable[[EndpointWithSecret], tuple[int, bytes]] | None = None,
    ) -> EndpointWithSecret | Replay:
        """Install a new secret. For `grace_s` seconds deliveries are signed with both the new and
        the previous secret; `grace_s=0` revokes the previous one at once (for a leaked secret).
        With an Idempotency-Key `claim`, a retry returns the stored response (rendered by
        `render`, without the secret) instead of rotating again. Raises InvalidRequest (grace
        out of range), IdempotencyKeyReused, IdempotencyKeyInFlight, WebhookEndpointNotFound."""
        invariant((claim is None) or (render is not None), "an idempotent rotation renders its response")
        if not 0 <= grace_s <= webhook_secret_rotation_grace_s:
            raise InvalidRequest(f"grace_s must be from 0 to {webhook_secret_rotation_grace_s}")
        now = utcnow()
        expires_at = now + timedelta(seconds=grace_s) if grace_s > 0 else None
        secret = new_secret()
        async with tenant_transaction(self.pool, tenant_id) as conn:
            found = await idempotency.claim_one(_plain(conn), claim)
            if found is not None:
                return found
            row = await endpoint_rows.rotate_secret(conn, tenant_id, endpoint_id, secret, self.keys, expires_at, now)
            if row is None:
                # Raising rolls the claim back: a retry after the endpoint exists is a new request.
                raise WebhookEndpointNotFound(f"no webhook endpoint '{endpoint_id}'")
            rotated = EndpointWithSecret(row.endpoint, secret, expires_at)
            if claim is not None and render is not None:
                status, body = render(rotated)
                await idempotency.complete(_plain(conn), [(claim, status, body)])
        return rotated

    async def list_deliveries(
        self, tenant_id: str, endpoint_id: str, before_seq: int | None, limit: int
    ) -> Page[Delivery]:
        """Deliveries of one endpoint, newest first, each with every attempt made.
        Raises WebhookEndpointNotFound."""
        _check_limit(limit)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            if await endpoint_rows.get_live(conn, tenant_id, endpoint_id) is None:
                raise WebhookEndpointNotFound(f"no webhook endpoint '{endpoint_id}'")
            rows = await delivery_rows.list_for_endpoint(
                conn, tenant_id, endpoint_id, before_seq or _MAX_SEQ, limit + 1
            )
        page = rows[:limit]
        has_more = len(rows) > limit
        return Page([d for _, d in page], has_more, page[-1][0] if has_more else None)

    async def list_notifications(
        self, tenant_id: str, account_id: str, before_seq: int | None, limit: int
    ) -> Page[Notification]:
        """One account's notifications, newest first. An account with none (or of another
        tenant) yields an empty page. Raises nothing."""
        _check_limit(limit)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            rows = await notification_rows.list_for_account(
                conn, tenant_id, account_id, before_seq or _MAX_SEQ, limit + 1
            )
        page = rows[:limit]
        has_more = len(rows) > limit
        return Page([n for _, n in page], has_more, page[-1][0] if has_more else None)

"""The `sandbox` payment provider as its own small HTTP service (`kassa provider sandbox`).

It behaves like a real provider: a charge or payout is accepted at once (`pending`) and its
outcome is delivered later, asynchronously, to kassa's `POST /v1/providers/sandbox/callbacks`,
signed `Sandbox-Signature: t=…,v1=…` (HMAC-SHA256, kassa's webhook scheme) with the secret of
KASSA_SANDBOX_SECRET_FILE. Outcomes follow the magic numbers of `sandbox_rules`. A delivery is
retried, re-signed each time, on a connection error or a 5xx; a 2xx or 4xx ends it.

Per account (kassa's tenant), test helpers set how callbacks behave:
    POST /v1/test_helpers/accounts/{account}/behaviour  {delay_ms, duplicate, out_of_order, manual}
        delay_ms      wait before the first callback
        duplicate     deliver the final event a second time (same event id, re-signed later)
        out_of_order  deliver an object's events newest first
        manual        deliver nothing by itself; the helpers below decide
and, in the style of Stripe Treasury's test helpers, force an outcome (by object id or reference):
    POST /v1/test_helpers/charges/{id}/succeed | /fail
    POST /v1/test_helpers/payouts/{id}/post | /fail | /return
    GET  /v1/test_helpers/deliveries?account=…   every delivery made: body, signature, answer

State lives in memory: the sandbox is for development and tests, never for money.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from kassa.notifications import sign
from kassa.payments.adapters.sandbox_client import SIGNATURE_HEADER
from kassa.payments.adapters.sandbox_rules import charge_lifecycle, payout_lifecycle
from kassa.shared.limits import provider_callback_attempts_max, provider_request_timeout_s

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

log = logging.getLogger("kassa.sandbox")
CALLBACK_URL_ENV = "KASSA_SANDBOX_CALLBACK_URL"
SECRET_FILE_ENV = "KASSA_SANDBOX_SECRET_FILE"  # noqa: S105 - a variable name, not a secret
_RETRY_DELAY_S_BASE = 0.2
_RETRY_DELAY_S_MAX = 5.0
_DELIVERIES_KEPT_MAX = 10_000


class Behaviour(msgspec.Struct, forbid_unknown_fields=True):
    delay_ms: int = 0
    duplicate: bool = False
    out_of_order: bool = False
    manual: bool = False


class ChargeIn(msgspec.Struct):
    account: str
    reference: str
    amount: int
    currency: str
    card: dict[str, str]


class PayoutIn(msgspec.Struct):
    account: str
    reference: str
    amount: int
    currency: str
    destination: dict[str, str]


class Outcome(msgspec.Struct):
    failure_code: str | None = None


@dataclass
class SandboxObject:
    kind: str  # "charge" | "payout"
    id: str
    account: str
    reference: str
    amount: int
    currency: str
    lifecycle: list[tuple[str, str | None]]
    status: str = "pending"
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Delivery:
    event_id: str
    type: str
    account: str
    reference: str
    body: str
    signature: str
    status: int | None


class Sandbox:
    def __init__(self, callback_url: str, secret: str) -> None:
        self.callback_url = callback_url
        self.secret = secret
        self.objects: dict[str, SandboxObject] = {}
        self.by_reference: dict[tuple[str, str, str], SandboxObject] = {}
        self.behaviours: dict[str, Behaviour] = {}
        self.deliveries: list[Delivery] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.client = httpx.AsyncClient(timeout=provider_request_timeout_s)
        self._last_signed: dict[str, int] = {}

    def create(self, kind: str, account: str, reference: str, amount: int, currency: str, number: str) -> SandboxObject:
        found = self.by_reference.get((kind, account, reference))
        if found is not None:
            return found  # idempotent by reference: a retried call never charges twice
        prefix = "ch_" if kind == "charge" else "po_"
        lifecycle = charge_lifecycle(number) if kind == "charge" else payout_lifecycle(number)
        obj = SandboxObject(kind, prefix + secrets.token_hex(12), account, reference, amount, currency, lifecycle)
        self.objects[obj.id] = obj
        self.by_reference[(kind, account, reference)] = obj
        behaviour = self.behaviours.get(account, Behaviour())
        if not behaviour.manual:
            self.spawn(self._run_lifecycle(obj, behaviour))
        return obj

    def find(self, kind: str, key: str) -> SandboxObject | None:
        obj = self.objects.get(key)
        if obj is not None and obj.kind == kind:
            return obj
        matches = [o for (k, _, ref), o in self.by_reference.items() if k == kind and ref == key]
        return matches[0] if len(matches) == 1 else None

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_lifecycle(self, obj: SandboxObject, behaviour: Behaviour) -> None:
        await asyncio.sleep(behaviour.delay_ms / 1000)
        events = [self.event(obj, kind, code) for kind, code in obj.lifecycle]
        obj.status = obj.lifecycle[-1][0].split(".", 1)[1]
        order = list(reversed(events)) if behaviour.out_of_order else events
        for event in order:
            await self.deliver(event)
        if behaviour.duplicate:
            await self.deliver(events[-1])

    def event(self, obj: SandboxObject, kind: str, failure_code: str | None) -> dict[str, Any]:
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "type": kind,
            "created": int(time.time()),
            "account": obj.account,
            "data": {
                "object": obj.kind,
                "id": obj.id,
                "reference": obj.reference,
                "amount": obj.amount,
                "currency": obj.currency,
                "failure_code": failure_code,
            },
        }
        obj.events.append(event)
        return event

    async def deliver(self, event: dict[str, Any]) -> None:
        """Deliver one event until kassa answers below 500; each attempt is signed afresh, and
        never twice with the same timestamp (a redelivery is not a replay)."""
        body = msgspec.json.encode(event)
        for attempt in range(1, provider_callback_attempts_max + 1):
            signed_at = int(time.time())
            last = self._last_signed.get(event["id"])
            if last is not None and signed_at <= last:
                await asyncio.sleep(last + 1 - time.time())
                signed_at = last + 1
            self._last_signed[event["id"]] = signed_at
            signature = sign(body, [self.secret], signed_at)
            status = await self._post(body, signature)
            self._record(
                Delivery(
                    event["id"],
                    event["type"],
                    event["account"],
                    event["data"]["reference"],
                    body.decode(),
                    signature,
                    status,
                )
            )
            if status is not None and status < 500:
                return
            await asyncio.sleep(min(_RETRY_DELAY_S_MAX, _RETRY_DELAY_S_BASE * 2 ** (attempt - 1)))
        log.warning("callback not delivered", extra={"event_id": event["id"], "type": event["type"]})

    async def _post(self, body: bytes, signature: str) -> int | None:
        try:
            response = await self.client.post(
                self.callback_url,
                content=body,
                headers={SIGNATURE_HEADER: signature, "content-type": "application/json"},
            )
        except httpx.TransportError:
            return None
        return response.status_code

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if len(self.deliveries) > _DELIVERIES_KEPT_MAX:
            del self.deliveries[: len(self.deliveries) - _DELIVERIES_KEPT_MAX]

    async def force(self, obj: SandboxObject, kind: str, failure_code: str | None) -> None:
        obj.status = kind.split(".", 1)[1]
        await self.deliver(self.event(obj, kind, failure_code))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.aclose()


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


def _object_out(obj: SandboxObject) -> dict[str, Any]:
    return {"id": obj.id, "object": obj.kind, "reference": obj.reference, "status": obj.status, "account": obj.account}


def create_app(callback_url: str | None = None, secret: str | None = None) -> Starlette:
    url = callback_url or os.environ[CALLBACK_URL_ENV]
    key = secret or Path(os.environ[SECRET_FILE_ENV]).read_text().strip()
    sandbox = Sandbox(url, key)

    async def charges(request: Request) -> Response:
        data = msgspec.json.decode(await request.body(), type=ChargeIn)
        obj = sandbox.create(
            "charge", data.account, data.reference, data.amount, data.currency, data.card.get("number", "")
        )
        return _json(_object_out(obj), 201)

    async def payouts(request: Request) -> Response:
        data = msgspec.json.decode(await request.body(), type=PayoutIn)
        number = data.destination.get("account_number", "")
        obj = sandbox.create("payout", data.account, data.reference, data.amount, data.currency, number)
        return _json(_object_out(obj), 201)

    async def behaviour(request: Request) -> Response:
        sandbox.behaviours[request.path_params["account"]] = msgspec.json.decode(await request.body(), type=Behaviour)
        return _json({"account": request.path_params["account"]})

    async def helper(request: Request) -> Response:
        kind, action = request.path_params["kind"], request.path_params["action"]
        events = {
            ("charges", "succeed"): "charge.succeeded",
            ("charges", "fail"): "charge.failed",
            ("payouts", "post"): "payout.posted",
            ("payouts", "fail"): "payout.failed",
            ("payouts", "return"): "payout.returned",
        }
        event = events.get((kind, action))
        obj = sandbox.find(kind.rstrip("s"), request.path_params["id"])
        if event is None or obj is None:
            return _json({"error": "no such object or action"}, 404)
        body = await request.body()
        outcome = msgspec.json.decode(body, type=Outcome) if body else Outcome()
        code = outcome.failure_code or (None if action in ("succeed", "post") else "forced_by_test_helper")
        await sandbox.force(obj, event, code)
        return _json(_object_out(obj))

    async def deliveries(request: Request) -> Response:
        account = request.query_params.get("account")
        found = [d for d in sandbox.deliveries if account is None or d.account == account]
        return _json([d.__dict__ for d in found])

    def get_object(kind: str, key: str) -> Response:
        obj = sandbox.find(kind, key)
        return _json(_object_out(obj)) if obj is not None else _json({"error": "no such object"}, 404)

    async def get_charge(request: Request) -> Response:
        return get_object("charge", request.path_params["id"])

    async def get_payout(request: Request) -> Response:
        return get_object("payout", request.path_params["id"])

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sandbox.close()

    routes = [
        Route("/v1/charges", charges, methods=["POST"]),
        Route("/v1/payouts", payouts, methods=["POST"]),
        Route("/v1/charges/{id:str}", get_charge, methods=["GET"]),
        Route("/v1/payouts/{id:str}", get_payout, methods=["GET"]),
        Route("/v1/test_helpers/accounts/{account:str}/behaviour", behaviour, methods=["POST"]),
        Route("/v1/test_helpers/deliveries", deliveries, methods=["GET"]),
        Route("/v1/test_helpers/{kind:str}/{id:str}/{action:str}", helper, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    return app

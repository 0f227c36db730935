"""Handing one money movement from an HTTP request to the ledger, with its Idempotency-Key.

The ledger stores what the API gives it as the key's receipt (`render.outcome_response`: the
status and body of this very response) and hands it back on a retry; it never renders HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kassa.api.render import outcome_response
from kassa.api.routing import Ctx, encoded_response, replay_response
from kassa.ledger import Replay
from kassa.observability import metrics
from kassa.observability.logging import trace_id_var
from kassa.shared.errors import IdempotencyKeyInFlight, KassaError

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.ledger import Command, IdemClaim, Outcome, ProductWrite


class in_flight:  # used as a context manager, like a function
    """Refuse a second concurrent request with the same key in this process at once (409);
    across processes the database claim serializes them instead. A plain (synchronous) context
    manager: no generator per request."""

    __slots__ = ("_claim", "_ident", "_inflight")

    def __init__(self, ctx: Ctx, claim: IdemClaim | None) -> None:
        self._inflight = ctx.services.inflight_keys
        self._ident: tuple[str, str] | None = None
        self._claim = claim

    def __enter__(self) -> None:
        self._ident = enter_in_flight(self._inflight, self._claim)

    def __exit__(self, *_: object) -> None:
        if self._ident is not None:
            self._inflight.discard(self._ident)


def enter_in_flight(inflight: set[tuple[str, str]], claim: IdemClaim | None) -> tuple[str, str] | None:
    """`in_flight`'s entry, for a caller that releases the key itself (`inflight.discard` of what
    this returns, None for no key): refuses a key already in flight here (409)."""
    if claim is None:
        return None
    ident = (claim.tenant_id, claim.key)
    if ident in inflight:
        raise IdempotencyKeyInFlight("a request with this Idempotency-Key is still being processed")
    inflight.add(ident)
    return ident


async def submit(
    ctx: Ctx,
    command: Command,
    canonical: bytes,
    created_status: int,
    product: str,
    *,
    write: ProductWrite[Any] | None = None,
    validated: bool = False,
) -> Response:
    """Apply `command` for this request; `product` labels the outcome metrics ("transfer" also
    counts in `kassa_transfers_total`, as it always has); `write` is a product's own rows,
    committed with the postings (`kassa.ledger.products`); `validated`: the route has run
    `kassa.ledger.validate` on `command` (before the Idempotency-Key), so the ledger does not
    run it again."""
    claim = ctx.idempotency_claim(canonical)
    # The receipt is rendered in the batcher's task, outside this request's context: give it
    # this request's trace id so that a replay repeats the first response byte for byte.
    trace_id = trace_id_var.get()

    # The receipt is the live response too: rendered once, kept for the outcome it was made
    # of (a batch retried job by job renders a new outcome, and only the last one is returned).
    rendered: list[tuple[Outcome, tuple[int, bytes]]] = []

    def receipt(outcome: Outcome) -> tuple[int, bytes]:
        response = outcome_response(outcome, created_status, trace_id)
        rendered[:] = [(outcome, response)]
        return response

    # `in_flight` written out (the hottest caller: three calls fewer per request).
    inflight = ctx.services.inflight_keys
    ident = None
    try:
        ident = enter_in_flight(inflight, claim)  # a 409 here is counted like the ledger's errors
        result = await ctx.services.ledger.execute(
            command,
            claim=claim,
            receipt=receipt if claim else None,
            product=write,
            trace_id=trace_id,
            validated=validated,
        )
    except KassaError as error:
        _count(product, error, error.code)
        raise
    finally:
        if ident is not None:
            inflight.discard(ident)
    if isinstance(result, Replay):
        _count(product, result, "replayed")
        return replay_response(result.status, result.body)
    metrics.observe_outcome(product, result, "ok" if product == "transfer" else None)  # `_count`, written out
    if rendered and rendered[0][0] is result:
        return encoded_response(*rendered[0][1])
    return encoded_response(*outcome_response(result, created_status, trace_id))


def _count(product: str, result: object, outcome: str) -> None:
    metrics.observe_outcome(product, result, outcome if product == "transfer" else None)

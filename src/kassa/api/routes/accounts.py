"""Accounts: create, read with balances, historical balance, journal entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from kassa.api import problems
from kassa.api.pagination import decode_id_cursor, decode_seq_cursor, page_limit, split_page
from kassa.api.render import account_out, balances, entry_out
from kassa.api.routing import Ctx, endpoint, json_response, replay_response
from kassa.api.schemas import AccountCreate, AccountOut, AccountPage, BalanceOut, EntryPage
from kassa.ledger import Account, AccountNotFound, Balance
from kassa.shared.clock import to_rfc3339, utcnow
from kassa.shared.errors import InvalidRequest, KassaError
from kassa.shared.ids import new_id
from kassa.store.idempotency import Replay

if TYPE_CHECKING:
    from starlette.responses import Response

PAGE_QUERY = (("limit", "integer", "page size (bounded)"), ("cursor", "string", "next_cursor of the previous page"))


def _receipt(result: Account | KassaError) -> tuple[int, bytes]:
    if isinstance(result, KassaError):
        return result.status, problems.error_body(result)
    return 201, msgspec.json.encode(account_out(result))


@endpoint(
    "POST",
    "/v1/accounts",
    scope="accounts:write",
    summary="Create an account",
    body=AccountCreate,
    responses={201: AccountOut},
    errors=(400, 401, 409, 413, 422),
    idempotent=True,
)
async def create_account(ctx: Ctx) -> Response:
    data = ctx.decode(AccountCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    account = Account(
        tenant_id=ctx.tenant_id,
        id=data.id or new_id(),
        currency=data.currency,
        normal_balance=data.normal_balance,
        allow_negative=data.allow_negative,
        balance=Balance(),
        metadata=data.metadata,
    )
    result = await ctx.services.ledger.create_account(account, claim, _receipt)
    if isinstance(result, Replay):
        return replay_response(result.status, result.body)
    return json_response(account_out(result), status=201)


@endpoint(
    "GET",
    "/v1/accounts",
    scope="accounts:read",
    summary="List accounts",
    responses={200: AccountPage},
    errors=(400, 401),
    query=PAGE_QUERY,
)
async def list_accounts(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    found = await ctx.services.ledger.list_accounts(ctx.tenant_id, decode_id_cursor(ctx.request), limit + 1)
    page, more, cursor = split_page(found, limit, lambda a: a.id)
    return json_response(AccountPage(data=[account_out(a) for a in page], has_more=more, next_cursor=cursor))


@endpoint(
    "GET",
    "/v1/accounts/{id}",
    scope="accounts:read",
    not_found=AccountNotFound,
    summary="Get an account with its balances",
    responses={200: AccountOut},
    errors=(401, 404),
)
async def get_account(ctx: Ctx) -> Response:
    account = await ctx.services.ledger.get_account(ctx.tenant_id, ctx.path_id(AccountNotFound))
    return json_response(account_out(account))


@endpoint(
    "GET",
    "/v1/accounts/{id}/balance",
    scope="accounts:read",
    not_found=AccountNotFound,
    summary="Balance now, or as of a past instant",
    responses={200: BalanceOut},
    errors=(400, 401, 404),
    query=(("as_of", "string", "RFC 3339 instant; default now"),),
)
async def get_balance(ctx: Ctx) -> Response:
    raw = ctx.request.query_params.get("as_of")
    as_of = utcnow() if raw is None else _parse_instant(raw)
    account, balance = await ctx.services.ledger.balance_as_of(ctx.tenant_id, ctx.path_id(AccountNotFound), as_of)
    if raw is None:
        balance = account.balance
    shown = balances(balance, account.normal_balance)
    return json_response(
        BalanceOut(
            account_id=account.id,
            currency=account.currency,
            as_of=to_rfc3339(as_of),
            posted=shown.posted,
            pending_debits=shown.pending_debits,
            pending_credits=shown.pending_credits,
            available=shown.available,
        )
    )


def _parse_instant(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest("as_of must be an RFC 3339 timestamp with a time zone") from exc
    if value.tzinfo is None:
        raise InvalidRequest("as_of must include a time zone offset (e.g. Z)")
    try:
        # 0001-01-01T00:00:00+14:00 is a valid datetime whose UTC instant is before year 1.
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidRequest("as_of is out of range") from exc


@endpoint(
    "GET",
    "/v1/accounts/{id}/entries",
    scope="accounts:read",
    not_found=AccountNotFound,
    summary="Journal entries of an account, newest first",
    responses={200: EntryPage},
    errors=(400, 401, 404),
    query=PAGE_QUERY,
)
async def list_entries(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    account, entries = await ctx.services.ledger.list_entries(
        ctx.tenant_id, ctx.path_id(AccountNotFound), decode_seq_cursor(ctx.request), limit + 1
    )
    page, more, cursor = split_page(entries, limit, lambda found: str(found[0]))
    data = [entry_out(seq, entry, account.normal_balance) for seq, entry in page]
    return json_response(EntryPage(data=data, has_more=more, next_cursor=cursor))

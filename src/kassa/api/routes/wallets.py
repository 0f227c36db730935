"""Wallets (payments context): one per customer and currency, read with their ledger balances
and their history from the journal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.api import problems
from kassa.api.pagination import decode_seq_cursor, page_limit, split_page
from kassa.api.render import balances, entry_out
from kassa.api.routing import Ctx, encoded_response, endpoint, json_response
from kassa.api.schemas import BalancesOut, Currency, EntryPage, Input
from kassa.identity.errors import CustomerNotFound
from kassa.payments.errors import WalletNotFound
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import KassaError
from kassa.store.idempotency import Replay

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.ledger import Account
    from kassa.payments.domain.wallets import Wallet

_TAG = "wallets"
PAGE_QUERY = (("limit", "integer", "page size (bounded)"), ("cursor", "string", "next_cursor of the previous page"))


class WalletCreate(Input, kw_only=True):
    currency: Currency


class WalletOut(msgspec.Struct):
    id: str
    customer_id: str
    currency: str
    account_id: str
    balances: BalancesOut
    created_at: str


class WalletList(msgspec.Struct):
    data: list[WalletOut]


def wallet_out(wallet: Wallet, account: Account) -> WalletOut:
    return WalletOut(
        id=wallet.id,
        customer_id=wallet.customer_id,
        currency=wallet.currency,
        account_id=wallet.account_id,
        balances=balances(account.balance, account.normal_balance),
        created_at=to_rfc3339(wallet.created_at),
    )


async def _out(ctx: Ctx, wallet: Wallet) -> WalletOut:
    account = await ctx.services.ledger.get_account(wallet.tenant_id, wallet.account_id)
    return wallet_out(wallet, account)


def _receipt(result: Wallet | KassaError) -> tuple[int, bytes]:
    if isinstance(result, KassaError):
        return result.status, problems.error_body(result)
    return 201, result.id.encode()


@endpoint(
    "POST",
    "/v1/customers/{id}/wallets",
    scope="payments:write",
    not_found=CustomerNotFound,
    summary="Open the customer's wallet in a currency (one per currency)",
    body=WalletCreate,
    responses={201: WalletOut},
    errors=(400, 401, 404, 409, 413),
    idempotent=True,
    tag=_TAG,
)
async def create_wallet(ctx: Ctx) -> Response:
    data = ctx.decode(WalletCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    wallets = ctx.services.wallets
    result = await wallets.create_wallet(ctx.tenant_id, ctx.path_id(CustomerNotFound), data.currency, claim, _receipt)
    if isinstance(result, Replay):
        headers = {"Idempotent-Replayed": "true"}
        if result.status != 201:
            return encoded_response(result.status, result.body, headers)
        wallet = await wallets.get_wallet(ctx.tenant_id, result.body.decode())
        return json_response(await _out(ctx, wallet), status=201, headers=headers)
    return json_response(await _out(ctx, result), status=201)


@endpoint(
    "GET",
    "/v1/customers/{id}/wallets",
    scope="payments:read",
    not_found=CustomerNotFound,
    summary="The customer's wallets, one per currency",
    responses={200: WalletList},
    errors=(401, 404),
    tag=_TAG,
)
async def list_customer_wallets(ctx: Ctx) -> Response:
    customer_id = ctx.path_id(CustomerNotFound)
    await ctx.services.customers.require_customer(ctx.tenant_id, customer_id)
    found = await ctx.services.wallets.wallets_of(ctx.tenant_id, customer_id)
    return json_response(WalletList(data=[await _out(ctx, w) for w in found]))


@endpoint(
    "GET",
    "/v1/wallets/{id}",
    scope="payments:read",
    not_found=WalletNotFound,
    summary="Get a wallet with its balances",
    responses={200: WalletOut},
    errors=(401, 404),
    tag=_TAG,
)
async def get_wallet(ctx: Ctx) -> Response:
    wallet = await ctx.services.wallets.get_wallet(ctx.tenant_id, ctx.path_id(WalletNotFound))
    return json_response(await _out(ctx, wallet))


@endpoint(
    "GET",
    "/v1/wallets/{id}/entries",
    scope="payments:read",
    not_found=WalletNotFound,
    summary="The wallet's history: its ledger account's journal entries, newest first",
    responses={200: EntryPage},
    errors=(400, 401, 404),
    query=PAGE_QUERY,
    tag=_TAG,
)
async def list_wallet_entries(ctx: Ctx) -> Response:
    wallet = await ctx.services.wallets.get_wallet(ctx.tenant_id, ctx.path_id(WalletNotFound))
    limit = page_limit(ctx.request)
    account, entries = await ctx.services.ledger.list_entries(
        ctx.tenant_id, wallet.account_id, decode_seq_cursor(ctx.request), limit + 1
    )
    page, more, cursor = split_page(entries, limit, lambda found: str(found[0]))
    data = [entry_out(seq, entry, account.normal_balance) for seq, entry in page]
    return json_response(EntryPage(data=data, has_more=more, next_cursor=cursor))

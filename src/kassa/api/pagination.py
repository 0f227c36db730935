"""Opaque cursors for keyset pagination, and the bounded `limit` parameter."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, TypeVar

from kassa.shared.errors import InvalidRequest
from kassa.shared.ids import is_client_id
from kassa.shared.limits import page_limit_default, page_limit_max

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from starlette.requests import Request


def page_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return page_limit_default
    # isdigit() alone accepts characters such as "²" that int() refuses; only ASCII digits count.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= page_limit_max:
        raise InvalidRequest(f"limit must be an integer from 1 to {page_limit_max}")
    return int(raw)


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(request: Request) -> str | None:
    raw = request.query_params.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        # validate=True: the lenient decoder silently drops foreign characters ("%%%" -> "").
        return base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("invalid cursor") from exc


def decode_id_cursor(request: Request) -> str | None:
    """A cursor holding a client id; anything else (a NUL byte, say) is refused before SQL sees it."""
    value = decode_cursor(request)
    if value is not None and not is_client_id(value):
        raise InvalidRequest("invalid cursor")
    return value


def decode_seq_cursor(request: Request) -> int | None:
    value = decode_cursor(request)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > 2**63 - 1:
        raise InvalidRequest("invalid cursor")
    return int(value)


def account_filter(request: Request) -> str | None:
    """The optional `account_id` query parameter of the ledger's lists."""
    account_id = request.query_params.get("account_id")
    if account_id is not None and not is_client_id(account_id):
        raise InvalidRequest("account_id must be 1-64 characters of [A-Za-z0-9_.:-]")
    return account_id


def split_page(found: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> tuple[Sequence[T], bool, str | None]:
    """`found` was fetched with `limit + 1`: the page, whether there is more, and the next cursor."""
    page = found[:limit]
    more = len(found) > limit
    return page, more, encode_cursor(cursor_of(page[-1])) if more else None

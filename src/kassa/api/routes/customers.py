"""Customers (identity context): create, read, list. Name and email are personal data: sealed at
rest, shown only to the tenant in these responses, never in a problem document or a log line.

An Idempotency-Key replay of a create reads the customer again instead of storing its first
response (that response holds personal data, and stored responses are not encrypted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from kassa.api import problems
from kassa.api.pagination import decode_id_cursor, page_limit, split_page
from kassa.api.routing import Ctx, endpoint, json_response
from kassa.api.schemas import Input, Metadata
from kassa.identity.domain.customers import CUSTOMER_ID_PATTERN, EMAIL_PATTERN, NAME_PATTERN, Customer
from kassa.identity.errors import CustomerExists, CustomerNotFound
from kassa.shared.clock import to_rfc3339
from kassa.shared.countries import COUNTRIES
from kassa.shared.ids import new_id
from kassa.shared.limits import customer_email_chars_max, customer_id_chars_max, customer_name_chars_max
from kassa.store.idempotency import Replay

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.identity.customers import CustomerService

_TAG = "customers"
PAGE_QUERY = (("limit", "integer", "page size (bounded)"), ("cursor", "string", "next_cursor of the previous page"))
CustomerId = Annotated[
    str,
    Meta(
        pattern=CUSTOMER_ID_PATTERN,
        min_length=1,
        max_length=customer_id_chars_max,
        description=f"1-{customer_id_chars_max} chars of [A-Za-z0-9_.:-]",
    ),
]


class CustomerCreate(Input, kw_only=True):
    id: CustomerId | None = None
    type: Literal["person", "business"]
    # The documented patterns state the domain's rules (no control characters, not only spaces,
    # an address shape) for clients and the schema fuzzer; the domain enforces them, answering
    # `invalid_customer` without echoing the value.
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=customer_name_chars_max,
            description="personal data: not only spaces, no control characters",
            extra_json_schema={"pattern": NAME_PATTERN},
        ),
    ]
    email: (
        Annotated[
            str,
            Meta(
                max_length=customer_email_chars_max,
                description="personal data",
                extra_json_schema={"pattern": EMAIL_PATTERN},
            ),
        ]
        | None
    ) = None
    # The enum tells clients (and the schema fuzzer) which codes are assigned; "AA" matches the
    # pattern but is no country.
    country: Annotated[
        str,
        Meta(
            pattern=r"^[A-Z]{2}\Z",
            description="assigned ISO 3166-1 alpha-2 code, e.g. DE",
            extra_json_schema={"enum": sorted(COUNTRIES)},
        ),
    ]
    metadata: Metadata = msgspec.field(default_factory=dict)


class CustomerOut(msgspec.Struct):
    id: str
    type: str
    name: str
    email: str | None
    country: str
    metadata: dict[str, Any]
    created_at: str


class CustomerPage(msgspec.Struct):
    data: list[CustomerOut]
    has_more: bool
    next_cursor: str | None


def customer_out(c: Customer) -> CustomerOut:
    assert c.created_at is not None  # a stored customer
    return CustomerOut(
        id=c.id,
        type=c.type,
        name=c.name,
        email=c.email,
        country=c.country,
        metadata=c.metadata,
        created_at=to_rfc3339(c.created_at),
    )


def _customers(ctx: Ctx) -> CustomerService:
    return ctx.services.customers


@endpoint(
    "POST",
    "/v1/customers",
    scope="customers:write",
    summary="Create a customer (a person who pays, or a business that is paid)",
    body=CustomerCreate,
    responses={201: CustomerOut},
    errors=(400, 401, 409, 413),
    idempotent=True,
    tag=_TAG,
)
async def create_customer(ctx: Ctx) -> Response:
    data = ctx.decode(CustomerCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    customer = Customer(
        tenant_id=ctx.tenant_id,
        id=data.id or new_id(),
        type=data.type,
        name=data.name,
        email=data.email,
        country=data.country,
        metadata=data.metadata,
    )
    result = await _customers(ctx).create_customer(customer, claim)
    if isinstance(result, Replay):
        return await _replay(ctx, result)
    # Compliance screens the name against the sanctions list (a hit blocks the customer).
    assert result.created_at is not None
    await ctx.services.compliance.register_customer(
        result.tenant_id, result.id, result.name, result.country, result.created_at
    )
    return json_response(customer_out(result), status=201)


async def _replay(ctx: Ctx, replay: Replay) -> Response:
    """The receipt of a create holds the customer id (201) or the error code."""
    headers = {"Idempotent-Replayed": "true"}
    if replay.status == 201:
        found = await _customers(ctx).get_customer(ctx.tenant_id, replay.body.decode())
        return json_response(customer_out(found), status=201, headers=headers)
    error = CustomerExists("a customer with this id already exists")
    return problems.problem(error, headers=headers)


@endpoint(
    "GET",
    "/v1/customers",
    scope="customers:read",
    summary="List customers in id order",
    responses={200: CustomerPage},
    errors=(400, 401),
    query=PAGE_QUERY,
    tag=_TAG,
)
async def list_customers(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    found = await _customers(ctx).list_customers(ctx.tenant_id, decode_id_cursor(ctx.request), limit + 1)
    page, more, cursor = split_page(found, limit, lambda c: c.id)
    return json_response(CustomerPage(data=[customer_out(c) for c in page], has_more=more, next_cursor=cursor))


@endpoint(
    "GET",
    "/v1/customers/{id}",
    scope="customers:read",
    not_found=CustomerNotFound,
    summary="Get a customer",
    responses={200: CustomerOut},
    errors=(401, 404),
    tag=_TAG,
)
async def get_customer(ctx: Ctx) -> Response:
    found = await _customers(ctx).get_customer(ctx.tenant_id, ctx.path_id(CustomerNotFound))
    return json_response(customer_out(found))

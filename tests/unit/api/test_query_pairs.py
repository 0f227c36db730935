"""The plain-query fast path gives every handler exactly the query parameters Starlette's parser gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams
from starlette.requests import Request

from kassa.api.routing import _query_pairs, check_params
from kassa.shared.errors import InvalidRequest, NotFound

# Query strings as clients send them, separators and blanks included, with and without escapes.
PIECE = st.text(alphabet="ab=&;:.-_~ 09%2B+\x7fé", max_size=12)
QUERY = st.lists(PIECE, max_size=6).map("&".join)


def request_for(query: bytes) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query, "headers": []})


@settings(max_examples=500)
@given(QUERY)
def test_the_pairs_and_the_query_params_equal_starlettes_parse(query: str) -> None:
    raw = query.encode("latin-1", "replace")
    expected = QueryParams(raw)
    request = request_for(raw)
    assert _query_pairs(request) == expected.multi_items()
    found = request.query_params
    assert found.multi_items() == expected.multi_items()
    assert {k: found.get(k) for k in expected} == {k: expected.get(k) for k in expected}
    assert found.get("absent") is None and str(found) == str(expected)


def test_a_plain_query_is_parsed_once_and_kept_for_the_handler() -> None:
    request = request_for(b"customer_id=fan-1&content_id=live&&flag")
    check_params(request, NotFound)
    assert type(request.query_params) is not QueryParams  # the fast path's, no second parse
    assert request.query_params.multi_items() == [("customer_id", "fan-1"), ("content_id", "live"), ("flag", "")]
    assert request.query_params.get("content_id") == "live"


@pytest.mark.parametrize("raw", [b"customer_id=\x01", b"customer_id=%01", b"a=b&c=\x7f+", b"c\x00=1"])
def test_control_characters_are_refused_on_both_paths(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        check_params(request_for(raw), NotFound)

"""Client ids are checked whole: a trailing newline (which `$` lets through) is not an id."""

from __future__ import annotations

import re

import msgspec
import pytest

from kassa.api.openapi import ecma_pattern
from kassa.api.schemas import AccountCreate
from kassa.shared.ids import CLIENT_ID_PATTERN, is_client_id


@pytest.mark.parametrize("value", ["abc\n", "abc\r\n", "\nabc", "a\x00b", "", "x" * 65, "a b", "é"])
def test_a_value_that_is_not_wholly_an_id_is_refused(value: str) -> None:
    assert not is_client_id(value)
    # msgspec applies a `pattern` with re.search, so the pattern itself must anchor at the very end.
    assert re.search(CLIENT_ID_PATTERN, value) is None
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode({"currency": "USD", "id": value}), type=AccountCreate)


@pytest.mark.parametrize("value", ["a", "acct_1", "01a2-3b:c.d", "x" * 64])
def test_a_valid_id_is_accepted(value: str) -> None:
    assert is_client_id(value)
    assert msgspec.json.decode(msgspec.json.encode({"currency": "USD", "id": value}), type=AccountCreate).id == value


def test_the_openapi_document_writes_the_end_anchor_as_json_schema_means_it() -> None:
    assert ecma_pattern(CLIENT_ID_PATTERN) == r"^[A-Za-z0-9_.:\-]{1,64}$"
    assert ecma_pattern("^[A-Z]{3}$") == "^[A-Z]{3}$"

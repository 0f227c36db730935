"""Endpoint registration rules: which URLs and event types are accepted, and what matches."""

from __future__ import annotations

import pytest

from kassa.notifications.domain.endpoints import validate_event_types, validate_url, wants
from kassa.notifications.errors import WebhookEventTypesInvalid, WebhookUrlInvalid
from kassa.shared.limits import webhook_event_types_max, webhook_url_chars_max


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks",
        "http://127.0.0.1:8080/x?y=1",
        "https://[::1]:9/a",
        "http://svc.ns.svc/h",
    ],
)
def test_http_and_https_urls_are_accepted(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/hooks",
        "ftp://example.com",
        "https://",
        "https://user:pw@example.com/",
        "https://example.com/#frag",
        "https://exa mple.com",
        "https://example.com:99999/",
        "https://example.com:0/",
        "https://example.com/\n",
        "javascript:alert(1)",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "https://example.com/" + "a" * webhook_url_chars_max,
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookUrlInvalid):
        validate_url(url)


def test_event_types_are_deduplicated_in_order() -> None:
    assert validate_event_types(["TransferPosted", "*", "TransferPosted"]) == ("TransferPosted", "*")


@pytest.mark.parametrize(
    "types",
    [
        [],
        ["transfer.posted"],
        ["Transfer Posted"],
        [""],
        ["T"],
        ["TransferPosted"] * 0 + ["x" * 65],
        [f"Event{i}" for i in range(webhook_event_types_max + 1)],
    ],
)
def test_bad_event_types_are_refused(types: list[str]) -> None:
    with pytest.raises(WebhookEventTypesInvalid):
        validate_event_types(types)


def test_the_wildcard_matches_every_type_and_names_match_exactly() -> None:
    assert wants(("*",), "AccountCreated")
    assert wants(("TransferPosted", "AccountCreated"), "AccountCreated")
    assert not wants(("TransferPosted",), "TransferPending")

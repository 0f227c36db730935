"""Endpoint registration rules: which URLs and event types are accepted (and in which normal
form), and what matches. The address rules themselves: test_webhook_target_addresses.py."""

from __future__ import annotations

import pytest

from kassa.notifications.domain.endpoints import validate_event_types, validate_url, wants
from kassa.notifications.errors import WebhookEventTypesInvalid, WebhookUrlInvalid, WebhookUrlTargetRefused
from kassa.shared.limits import webhook_event_types_max, webhook_url_chars_max


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks",
        "http://93.184.215.14:8080/x?y=1",
        "https://[2606:4700::6810:84e5]:9/a",
        "http://svc.ns.svc/h",
    ],
)
def test_http_and_https_urls_to_public_hosts_are_accepted_as_they_are(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/x?y=1", "https://[::1]:9/a", "http://10.1.2.3/h", "http://localhost:8000/h"],
)
def test_loopback_and_private_receivers_need_the_allow_private_setting(url: str) -> None:
    with pytest.raises(WebhookUrlTargetRefused):
        validate_url(url)
    assert validate_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTP://Example.COM/Path?Q=1", "http://example.com/Path?Q=1"),
        ("HtTpS://EXAMPLE.com:8443", "https://example.com:8443"),
        ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
        ("http://93.184.215.14.:80/", "http://93.184.215.14:80/"),
        ("http://1590941454/", "http://94.211.215.14/"),
        ("https://[2606:4700:0000::6810:84E5]/", "https://[2606:4700::6810:84e5]/"),
    ],
)
def test_urls_are_normalised_with_the_scheme_and_host_in_lower_case(url: str, normal: str) -> None:
    assert validate_url(url) == normal


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
        "http://exa%6dple.com/",
        "http://[fe80::1%25eth0]/",
        "http://evil.example\\@good.example/",
        "http://a..b/",
        "http://[not-v6]/",
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

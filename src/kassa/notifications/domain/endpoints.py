"""Webhook endpoints: validation of what a tenant registers, and which events an endpoint wants."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from kassa.notifications.domain.addresses import host_refusal, literal_address
from kassa.notifications.errors import WebhookEventTypesInvalid, WebhookUrlInvalid, WebhookUrlTargetRefused
from kassa.shared.limits import webhook_event_types_max, webhook_url_chars_max

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

WILDCARD = "*"
# Event names are PascalCase, past tense (TransferPosted); the pattern only checks the shape so
# that endpoints can subscribe to event types added after they were registered.
_EVENT_TYPE = re.compile(r"[A-Z][A-Za-z0-9]{1,63}")  # fullmatch: `$` accepts a final newline
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f\\]")
# Letters, digits, hyphens, dots and underscores (used by some internal names); a "%" would
# reach the resolver as it is.
_HOST = re.compile(r"[a-z0-9_](?:[a-z0-9._-]*[a-z0-9_])?\.?")  # used with fullmatch


@dataclass(frozen=True, slots=True)
class Endpoint:
    tenant_id: str
    id: str
    url: str
    event_types: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


def validate_url(url: str, allow_private: bool = False) -> str:
    """The URL in its normal form (scheme and host in lower case, the host in ASCII); raises
    WebhookUrlInvalid, or WebhookUrlTargetRefused for a host that is a refused address in any
    spelling or a loopback or metadata name (see `addresses.py`). A name is not resolved here:
    the service resolves it, and delivery resolves it again.

    http is accepted next to https so that local and in-cluster receivers work; credentials in
    the URL are refused because the URL is shown back in listings and logs.
    """
    if not url or len(url) > webhook_url_chars_max or _URL_FORBIDDEN.search(url):
        raise WebhookUrlInvalid(f"url must be 1-{webhook_url_chars_max} printable characters without backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise WebhookUrlInvalid(f"url is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlInvalid("url must be absolute, with an http or https scheme and a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlInvalid("url must not carry credentials")
    if parts.fragment:
        raise WebhookUrlInvalid("url must not have a fragment")
    if port == 0:
        raise WebhookUrlInvalid("url port must be between 1 and 65535")
    host = _ascii_host(parts.hostname, bracketed="[" in parts.netloc)
    address = literal_address(host)
    if address is not None:
        host = str(address)  # one spelling per address: 127.1 and 0x7f000001 are 127.0.0.1
    refused = host_refusal(host, allow_private)
    if refused is not None:
        raise WebhookUrlTargetRefused(f"url host {host} is not an allowed receiver ({refused.value})")
    netloc = (f"[{host}]" if ":" in host else host) + ("" if port is None else f":{port}")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _ascii_host(hostname: str, bracketed: bool) -> str:
    """The host as the resolver will see it: an IPv6 literal, or IDNA-encoded ASCII labels."""
    if bracketed:
        if "%" in hostname:
            raise WebhookUrlInvalid("url host must not carry an IPv6 zone")
        try:
            return str(ipaddress.IPv6Address(hostname))
        except ValueError as exc:
            raise WebhookUrlInvalid(f"url host [{hostname}] is not an IPv6 address") from exc
    try:
        ascii_host = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise WebhookUrlInvalid(f"url host {hostname!r} is not a valid host name") from exc
    if not _HOST.fullmatch(ascii_host):
        raise WebhookUrlInvalid(f"url host {hostname!r} is not a valid host name")
    return ascii_host


def validate_event_types(event_types: Sequence[str]) -> tuple[str, ...]:
    """Deduplicated event types in their given order; raises WebhookEventTypesInvalid."""
    if not event_types:
        raise WebhookEventTypesInvalid("event_types needs at least one entry ('*' for all)")
    if len(event_types) > webhook_event_types_max:
        raise WebhookEventTypesInvalid(f"at most {webhook_event_types_max} event types")
    seen: dict[str, None] = {}
    for event_type in event_types:
        if event_type != WILDCARD and not _EVENT_TYPE.fullmatch(event_type):
            raise WebhookEventTypesInvalid(f"'{event_type}' is not an event type name such as TransferPosted")
        seen[event_type] = None
    return tuple(seen)


def wants(event_types: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `event_types` receives `event_type`."""
    return WILDCARD in event_types or event_type in event_types

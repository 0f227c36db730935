"""Webhook endpoints: validation of what a tenant registers, and which events an endpoint wants."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kassa.notifications.errors import WebhookEventTypesInvalid, WebhookUrlInvalid
from kassa.shared.limits import webhook_event_types_max, webhook_url_chars_max

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

WILDCARD = "*"
# Event names are PascalCase, past tense (TransferPosted); the pattern only checks the shape so
# that endpoints can subscribe to event types added after they were registered.
_EVENT_TYPE = re.compile(r"[A-Z][A-Za-z0-9]{1,63}")  # fullmatch: `$` accepts a final newline
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Endpoint:
    tenant_id: str
    id: str
    url: str
    event_types: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


def validate_url(url: str) -> str:
    """The URL as registered; raises WebhookUrlInvalid.

    http is accepted next to https so that local and in-cluster receivers work; credentials in
    the URL are refused because the URL is shown back in listings and logs.
    """
    if not url or len(url) > webhook_url_chars_max or _URL_FORBIDDEN.search(url):
        raise WebhookUrlInvalid(f"url must be 1-{webhook_url_chars_max} printable characters")
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
    _refuse_special_addresses(parts.hostname)
    return url


def _refuse_special_addresses(host: str) -> None:
    """Refuse IP literals that are never a webhook receiver: link-local (cloud metadata services
    live at 169.254.169.254), multicast, unspecified and reserved. Loopback and private ranges
    stay allowed for local and in-cluster receivers; host names are not resolved here."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a host name
    if address.is_loopback:
        return  # IPv6 ::1 sits inside the reserved ::/8 block, yet is a fine local receiver
    if address.is_link_local or address.is_multicast or address.is_unspecified or address.is_reserved:
        raise WebhookUrlInvalid(f"url host {host} is not a routable receiver address")


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

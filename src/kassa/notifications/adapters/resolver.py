"""Resolving and vetting a webhook receiver's host (the rules are in `domain/addresses.py`):
at registration (`check_registration`) and for every connection a delivery opens
(`targets.VettingBackend` calls `vetted_addresses`).

This module does not import httpx at load time: the API imports it on start-up, and httpx costs
a quarter of a second there (a granian worker still starting when the API is told to stop does
not stop).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING

from kassa.notifications.domain.addresses import AddressClass, host_refusal, literal_address, normalise_host, refusal
from kassa.notifications.errors import WebhookUrlInvalid, WebhookUrlTargetRefused
from kassa.shared.limits import webhook_registration_resolve_timeout_s

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kassa.notifications.domain.addresses import IPAddress

    Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

__all__ = ["Resolver", "TargetRefused", "check_registration", "system_resolve", "vetted_addresses"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class TargetRefused(Exception):
    """A receiver host is, or resolves to, an address webhooks must not reach."""

    def __init__(self, host: str, address: IPAddress | None, reason: AddressClass) -> None:
        self.host, self.address, self.reason = host, address, reason
        shown = host if address is None or str(address) == host else f"{host} ({address})"
        super().__init__(f"target refused: {shown} is {reason.value}")


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host`, in its order, without repeats.
    Raises OSError (socket.gaierror) when the name does not resolve."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        # An IPv6 link-local answer carries its zone ("fe80::1%eth0"); the zone changes nothing
        # about the class of the address.
        found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(found)


async def vetted_addresses(host: str, port: int, resolve: Resolver, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to for `host`, all of them allowed. Raises TargetRefused if the
    host or any address it resolves to is refused (a name with one bad address is refused as a
    whole), OSError if it does not resolve."""
    refused = host_refusal(host, allow_private)
    literal = literal_address(host)
    if refused is not None:
        raise TargetRefused(host, literal, refused)
    addresses = [literal] if literal is not None else await resolve(normalise_host(host), port)
    if not addresses:
        raise OSError(f"{host} resolved to no address")
    for address in addresses:
        reason = refusal(address, allow_private)
        if reason is not None:
            raise TargetRefused(host, address, reason)
    return addresses


def _host_and_port(url: str) -> tuple[str, int]:
    """The host and port the HTTP client itself will connect to for `url`."""
    import httpx  # here, not at the top: see the module docstring

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookUrlInvalid(f"url is malformed: {exc}") from exc
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host:
        raise WebhookUrlInvalid("url must be absolute, with an http or https scheme and a host")
    return parsed.raw_host.decode("ascii"), parsed.port or _DEFAULT_PORTS[parsed.scheme]


async def check_registration(url: str, allow_private: bool, resolve: Resolver = system_resolve) -> None:
    """Refuse a URL whose host resolves to a refused address. The host is taken from the HTTP
    client's own parse of the URL, so the check and the later connection agree on it. A name
    that does not resolve now (or not within the timeout) is accepted: delivery vets it again.
    Raises WebhookUrlInvalid, WebhookUrlTargetRefused."""
    host, port = _host_and_port(url)
    try:
        async with asyncio.timeout(webhook_registration_resolve_timeout_s):
            await vetted_addresses(host, port, resolve, allow_private)
    except TargetRefused as exc:
        raise WebhookUrlTargetRefused(f"url host {host} is not an allowed receiver ({exc.reason.value})") from None
    except (OSError, TimeoutError):
        return

"""Which network addresses a webhook may be sent to, and how a URL host spells an address.

A webhook URL is chosen by a tenant, so without these rules kassa would be a request forger
against its own network: its API, PostgreSQL, NATS, and the cloud metadata service that hands
out credentials. Two checks use these rules: registration refuses a host that is, or resolves
to, a refused address; delivery resolves again and connects only to an address that passed
(see `adapters/resolver.py` and `adapters/targets.py`).

A URL host such as `2130706433`, `0x7f000001`, `0177.1` or `127.1` is an IPv4 address to the C
library: `getaddrinfo` parses numeric hosts with `inet_aton`, which takes one to four parts,
each decimal, octal (leading 0) or hexadecimal (0x), the last part filling the remaining
bytes. `parse_inet_aton` follows that grammar exactly, so that every spelling the HTTP client
would connect to is recognised here.

Refused always: unspecified and "this network" (0.0.0.0/8 reaches the local host on Linux),
link-local (169.254.0.0/16 and fe80::/10, where metadata services live), known metadata
addresses outside link-local, multicast, reserved and documentation ranges, and IPv6 forms
that embed an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo): their IPv4 part could
be any of the above. Loopback and private ranges (RFC 1918, unique local, shared CGNAT space)
are refused too unless `allow_private` is set (KASSA_WEBHOOK_ALLOW_PRIVATE), for tests and
in-cluster receivers; link-local and metadata stay refused even then.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = [
    "AddressClass",
    "IPAddress",
    "classify",
    "host_refusal",
    "literal_address",
    "normalise_host",
    "parse_inet_aton",
    "refusal",
]


class AddressClass(StrEnum):
    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link_local"
    METADATA = "metadata"
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"
    RESERVED = "reserved"
    IPV4_EMBEDDED = "ipv4_embedded"  # IPv4-mapped, -compatible, NAT64, 6to4, Teredo


# Allowed with allow_private; everything else that is not PUBLIC is always refused.
_PRIVATE_CLASSES: Final = frozenset({AddressClass.LOOPBACK, AddressClass.PRIVATE})


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Checked in this order; the first match wins. Explicit tables rather than the ipaddress
# module's is_private/is_global flags, whose lists changed between Python releases.
_TABLE: Final = (
    (AddressClass.METADATA, _nets("100.100.100.200/32", "fd00:ec2::254/128", "192.0.0.192/32")),
    (AddressClass.UNSPECIFIED, _nets("0.0.0.0/8", "::/128")),
    (AddressClass.LOOPBACK, _nets("127.0.0.0/8", "::1/128")),
    (AddressClass.LINK_LOCAL, _nets("169.254.0.0/16", "fe80::/10")),
    (AddressClass.MULTICAST, _nets("224.0.0.0/4", "ff00::/8")),
    (AddressClass.PRIVATE, _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")),
    (
        AddressClass.IPV4_EMBEDDED,
        _nets("::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32"),
    ),
    (
        AddressClass.RESERVED,
        _nets(
            "192.0.0.0/24",  # IETF protocol assignments
            "192.0.2.0/24",  # documentation (TEST-NET-1)
            "198.18.0.0/15",  # benchmarking
            "198.51.100.0/24",  # documentation (TEST-NET-2)
            "203.0.113.0/24",  # documentation (TEST-NET-3)
            "192.88.99.0/24",  # former 6to4 relay anycast
            "240.0.0.0/4",  # reserved, including the limited broadcast address
            "100::/64",  # discard-only
            "2001::/23",  # IETF protocol assignments
            "2001:db8::/32",  # documentation
            "3fff::/20",  # documentation
            "fec0::/10",  # deprecated site-local
        ),
    ),
)
_GLOBAL_UNICAST_V6: Final = ipaddress.ip_network("2000::/3")

# Names of cloud metadata services; they resolve to link-local addresses, which delivery would
# refuse anyway, but registration refuses them by name so that the answer does not depend on
# the resolver of the machine that happens to run the API.
_METADATA_NAMES: Final = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_LAST_PART_MAX: Final = (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)  # by the number of parts before it
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def classify(address: IPAddress) -> AddressClass:
    """The class of an address; PUBLIC only for globally routable unicast."""
    for klass, networks in _TABLE:
        if any(address.version == net.version and address in net for net in networks):
            return klass
    if address.version == 6:
        # Outside 2000::/3 nothing is assigned for unicast on the internet.
        return AddressClass.PUBLIC if address in _GLOBAL_UNICAST_V6 else AddressClass.RESERVED
    return AddressClass.PUBLIC if address.is_global else AddressClass.RESERVED


def refusal(address: IPAddress, allow_private: bool) -> AddressClass | None:
    """Why a webhook must not go to `address`, or None if it may."""
    klass = classify(address)
    if klass is AddressClass.PUBLIC or (allow_private and klass in _PRIVATE_CLASSES):
        return None
    return klass


def _inet_aton_part(text: str) -> int | None:
    """One part as C's strtoul(text, base 0) reads it, the whole part or nothing."""
    if not text or not text[0].isdigit():
        return None  # inet_aton wants a digit first: no sign, no space, no empty part
    if text[:2] in ("0x", "0X"):
        digits = text[2:]
        if not digits or not set(digits) <= _HEX_DIGITS:
            return None
        return int(digits, 16)
    if text[0] == "0":
        if not set(text) <= set("01234567"):
            return None
        return int(text, 8)
    if not text.isdigit() or not text.isascii():
        return None
    return int(text, 10)


def parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address `text` denotes to the C library's inet_aton (in the exact form that
    getaddrinfo uses: nothing may follow the number), or None if it is not one."""
    if not text.isascii():
        return None
    parts = text.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _inet_aton_part(part)
        if value is None or value > 0xFFFFFFFF:
            return None
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last > _LAST_PART_MAX[len(head)]:
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def normalise_host(host: str) -> str:
    """Lower case, without the one trailing dot of a fully qualified name (`example.com.` is
    `example.com`, and `169.254.169.254.` must not slip past as a name)."""
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host denotes by itself (no resolution), or None for a name. IPv6
    comes without its brackets; IPv4 in any spelling inet_aton accepts."""
    host = normalise_host(host)
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return parse_inet_aton(host)


def host_refusal(host: str, allow_private: bool) -> AddressClass | None:
    """Why a URL host must be refused without resolving it: a literal address in a refused
    range, a name of the loopback interface (`localhost`, `*.localhost`, RFC 6761), or a name
    of a cloud metadata service. None if the host may be used (a name still has to resolve to
    allowed addresses, which the caller checks)."""
    name = normalise_host(host)
    address = literal_address(name)
    if address is not None:
        return refusal(address, allow_private)
    if name in _METADATA_NAMES:
        return AddressClass.METADATA
    if (name == "localhost" or name.endswith(".localhost")) and not allow_private:
        return AddressClass.LOOPBACK
    return None

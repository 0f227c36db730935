"""Webhook targets: every spelling of an internal address is recognised (as the C library's
inet_aton reads it) and refused, at registration and when a name resolves there."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.notifications.adapters.resolver import TargetRefused, vetted_addresses
from kassa.notifications.domain.addresses import (
    AddressClass,
    IPAddress,
    classify,
    host_refusal,
    literal_address,
    parse_inet_aton,
    refusal,
)
from kassa.notifications.domain.endpoints import validate_url
from kassa.notifications.errors import WebhookUrlTargetRefused

METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.169.254./",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0XA9FEA9FE/",
    "http://0251.0376.0251.0376/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://169.254.43518/",
    "http://169.16689662/",
    "http://metadata.google.internal/",
    "http://METADATA.google.internal./computeMetadata/v1/",
    "http://metadata/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::169.254.169.254]/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
]
LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:8000/",
    "http://2130706433:8000/",
    "http://0x7f000001:8000/",
    "http://0x7f.1:8000/",
    "http://0177.0.0.1:8000/",
    "http://127.1:8000/",
    "http://127.0.1:8000/",
    "http://127.1.:8000/",
    "http://localhost:8000/",
    "http://LocalHost.:8000/",
    "http://api.localhost:8000/",
    "http://[::1]:8000/",
    "http://[0:0:0:0:0:0:0:1]:8000/",
]
PRIVATE_SPELLINGS = [
    "http://10.0.0.1/",
    "http://012.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://[fd12::1]/",
]
ALWAYS_REFUSED_SPELLINGS = [
    "http://0/",
    "http://0.0.0.0/",
    "http://0x0/",
    "http://00/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://4294967295/",
    "http://240.0.0.1/",
    "http://192.0.2.1/",
    "http://[2001:db8::1]/",
]


@pytest.mark.parametrize("url", METADATA_SPELLINGS + LOOPBACK_SPELLINGS + PRIVATE_SPELLINGS + ALWAYS_REFUSED_SPELLINGS)
def test_registration_refuses_every_spelling_of_an_internal_address(url: str) -> None:
    with pytest.raises(WebhookUrlTargetRefused) as raised:
        validate_url(url)
    assert raised.value.code == "webhook_url_target_refused"
    assert raised.value.status == 400


@pytest.mark.parametrize("url", METADATA_SPELLINGS + ALWAYS_REFUSED_SPELLINGS)
def test_link_local_metadata_and_special_addresses_stay_refused_when_private_targets_are_allowed(url: str) -> None:
    with pytest.raises(WebhookUrlTargetRefused):
        validate_url(url, allow_private=True)


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS + PRIVATE_SPELLINGS)
def test_loopback_and_private_spellings_are_allowed_only_with_the_setting(url: str) -> None:
    normal = validate_url(url, allow_private=True)
    assert normal.startswith("http://")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0", "0.0.0.0"),  # noqa: S104 - an address under test, not a bind
        ("00000000000177.1", "127.0.0.1"),
        ("0x000000000000000a.0.0.1", "10.0.0.1"),
        ("4294967295", "255.255.255.255"),
    ],
)
def test_inet_aton_spellings_parse_to_the_address_the_c_library_connects_to(host: str, address: str) -> None:
    assert parse_inet_aton(host) == ipaddress.IPv4Address(address)
    assert socket.inet_ntoa(socket.inet_aton(host)) == address  # the C library agrees


@pytest.mark.parametrize(
    "host",
    [
        "",
        "0x",
        "08",
        "0x1g",
        "1.2.3.4.",
        "1..2",
        ".1",
        "1.2.3.4.5",
        "4294967296",
        "1.16777216",
        "256.1.1.1",
        "-1",
        "+1",
    ],
)
def test_strings_inet_aton_refuses_are_not_addresses(host: str) -> None:
    assert parse_inet_aton(host) is None


@given(st.text(alphabet="0123456789xXabcdefABCDEF.", max_size=24))
def test_parse_inet_aton_agrees_with_the_c_library_on_any_digits_and_dots(text: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    assert parse_inet_aton(text) == expected


@pytest.mark.parametrize(
    ("address", "klass"),
    [
        ("8.8.8.8", AddressClass.PUBLIC),
        ("2606:4700::6810:84e5", AddressClass.PUBLIC),
        ("127.0.0.1", AddressClass.LOOPBACK),
        ("127.255.255.254", AddressClass.LOOPBACK),
        ("::1", AddressClass.LOOPBACK),
        ("10.2.3.4", AddressClass.PRIVATE),
        ("172.31.255.255", AddressClass.PRIVATE),
        ("192.168.0.1", AddressClass.PRIVATE),
        ("100.64.0.1", AddressClass.PRIVATE),
        ("fc00::1", AddressClass.PRIVATE),
        ("169.254.169.254", AddressClass.LINK_LOCAL),
        ("fe80::1", AddressClass.LINK_LOCAL),
        ("100.100.100.200", AddressClass.METADATA),
        ("fd00:ec2::254", AddressClass.METADATA),
        ("224.0.0.251", AddressClass.MULTICAST),
        ("ff05::2", AddressClass.MULTICAST),
        ("0.0.0.0", AddressClass.UNSPECIFIED),  # noqa: S104 - an address under test
        ("0.1.2.3", AddressClass.UNSPECIFIED),
        ("::", AddressClass.UNSPECIFIED),
        ("::ffff:8.8.8.8", AddressClass.IPV4_EMBEDDED),
        ("::8.8.8.8", AddressClass.IPV4_EMBEDDED),
        ("64:ff9b::a9fe:a9fe", AddressClass.IPV4_EMBEDDED),
        ("2002:a9fe:a9fe::1", AddressClass.IPV4_EMBEDDED),
        ("2001:0:a9fe:a9fe::1", AddressClass.IPV4_EMBEDDED),
        ("240.1.2.3", AddressClass.RESERVED),
        ("198.18.0.1", AddressClass.RESERVED),
        ("203.0.113.9", AddressClass.RESERVED),
        ("2001:db8::1", AddressClass.RESERVED),
        ("4000::1", AddressClass.RESERVED),
        ("fec0::1", AddressClass.RESERVED),
    ],
)
def test_addresses_are_classified(address: str, klass: AddressClass) -> None:
    assert classify(ipaddress.ip_address(address)) is klass


def test_only_loopback_and_private_addresses_are_opened_by_the_setting() -> None:
    for klass_of, address in (("loopback", "127.0.0.1"), ("private", "10.0.0.1"), ("private", "fd00::1")):
        ip = ipaddress.ip_address(address)
        assert refusal(ip, allow_private=False) == klass_of
        assert refusal(ip, allow_private=True) is None
    for address in ("169.254.169.254", "fe80::1", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1", "100.100.100.200"):  # noqa: S104
        assert refusal(ipaddress.ip_address(address), allow_private=True) is not None


def test_host_names_of_the_loopback_interface_and_of_metadata_services_are_refused_by_name() -> None:
    assert host_refusal("localhost", False) is AddressClass.LOOPBACK
    assert host_refusal("x.LOCALHOST.", False) is AddressClass.LOOPBACK
    assert host_refusal("localhost", True) is None
    assert host_refusal("metadata.google.internal.", True) is AddressClass.METADATA
    assert host_refusal("localhost.example.com", False) is None
    assert host_refusal("example.com", False) is None
    assert literal_address("example.com") is None


class _Resolver:
    """Fixed answers (an unknown name does not resolve), counting its lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


def _resolver(answers: dict[str, list[str]]) -> _Resolver:
    return _Resolver(answers)


async def test_a_name_is_vetted_by_every_address_it_resolves_to() -> None:
    resolve = _resolver({"ok.test": ["93.184.215.14"], "mixed.test": ["93.184.215.14", "10.0.0.7"]})
    assert await vetted_addresses("ok.test", 443, resolve, allow_private=False) == [
        ipaddress.ip_address("93.184.215.14")
    ]
    with pytest.raises(TargetRefused) as raised:
        await vetted_addresses("mixed.test", 443, resolve, allow_private=False)
    assert (raised.value.reason, str(raised.value.address)) == (AddressClass.PRIVATE, "10.0.0.7")
    assert await vetted_addresses("mixed.test", 443, resolve, allow_private=True)


async def test_a_name_that_resolves_to_the_metadata_service_is_refused_even_with_private_targets_allowed() -> None:
    resolve = _resolver({"rebind.test": ["169.254.169.254"]})
    with pytest.raises(TargetRefused, match="link_local"):
        await vetted_addresses("rebind.test", 80, resolve, allow_private=True)


async def test_literal_hosts_are_not_resolved_and_unresolvable_names_are_an_os_error() -> None:
    resolve = _resolver({})
    with pytest.raises(TargetRefused):
        await vetted_addresses("0x7f000001", 80, resolve, allow_private=False)
    assert await vetted_addresses("0x7f000001", 80, resolve, allow_private=True) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(OSError):
        await vetted_addresses("nowhere.test", 80, resolve, allow_private=False)
    assert resolve.calls == ["nowhere.test"]

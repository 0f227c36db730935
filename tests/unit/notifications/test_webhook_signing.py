"""Webhook signatures round-trip, reject tampering and stale timestamps, and survive rotation."""

from __future__ import annotations

import pytest

from kassa.notifications.domain.signing import SECRET_PREFIX, new_secret, parse_header, sign, verify
from kassa.notifications.errors import (
    SignatureHeaderMalformed,
    SignatureInvalid,
    SignatureMismatch,
    SignatureTimestampOutOfRange,
)
from kassa.shared.limits import webhook_signature_tolerance_s

BODY = b'{"id":"0192","type":"TransferPosted","data":{"amount":1234}}'
NOW = 1_790_000_000


def test_a_signature_verifies_with_the_secret_that_made_it() -> None:
    secret = new_secret()
    header = sign(BODY, [secret], NOW)
    assert verify(BODY, header, secret, now=NOW) == NOW


def test_the_header_has_the_documented_shape() -> None:
    header = sign(BODY, [new_secret()], NOW)
    timestamp, macs = parse_header(header)
    assert header.startswith(f"t={NOW},v1=")
    assert timestamp == NOW
    assert len(macs) == 1 and len(macs[0]) == 64
    int(macs[0], 16)


def test_the_mac_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    secret = new_secret()
    expected = hmac.new(secret.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, [secret], NOW) == f"t={NOW},v1={expected}"


def test_a_tampered_body_is_rejected() -> None:
    secret = new_secret()
    header = sign(BODY, [secret], NOW)
    with pytest.raises(SignatureMismatch):
        verify(BODY.replace(b"1234", b"9234"), header, secret, now=NOW)


def test_a_tampered_timestamp_is_rejected() -> None:
    secret = new_secret()
    header = sign(BODY, [secret], NOW).replace(f"t={NOW}", f"t={NOW + 1}")
    with pytest.raises(SignatureMismatch):
        verify(BODY, header, secret, now=NOW)


def test_another_secret_is_rejected() -> None:
    header = sign(BODY, [new_secret()], NOW)
    with pytest.raises(SignatureMismatch):
        verify(BODY, header, new_secret(), now=NOW)


@pytest.mark.parametrize("skew", [webhook_signature_tolerance_s, -webhook_signature_tolerance_s])
def test_a_timestamp_at_the_edge_of_the_tolerance_is_accepted(skew: int) -> None:
    secret = new_secret()
    header = sign(BODY, [secret], NOW)
    assert verify(BODY, header, secret, now=NOW + skew) == NOW


@pytest.mark.parametrize("skew", [webhook_signature_tolerance_s + 1, -(webhook_signature_tolerance_s + 1)])
def test_a_timestamp_beyond_the_tolerance_is_rejected_even_if_the_mac_matches(skew: int) -> None:
    secret = new_secret()
    header = sign(BODY, [secret], NOW)
    with pytest.raises(SignatureTimestampOutOfRange):
        verify(BODY, header, secret, now=NOW + skew)


def test_a_custom_tolerance_applies() -> None:
    secret = new_secret()
    header = sign(BODY, [secret], NOW)
    with pytest.raises(SignatureTimestampOutOfRange):
        verify(BODY, header, secret, now=NOW + 11, tolerance_s=10)


def test_during_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    header = sign(BODY, [new, old], NOW)
    assert len(parse_header(header)[1]) == 2
    assert verify(BODY, header, old, now=NOW) == NOW
    assert verify(BODY, header, new, now=NOW) == NOW
    assert verify(BODY, header, [new_secret(), old], now=NOW) == NOW


@pytest.mark.parametrize(
    "header",
    [
        "",
        "v1=abc",
        f"t={NOW}",
        "t=abc,v1=00",
        f"t={NOW},t={NOW},v1=00",
        "garbage",
        "t=-5,v1=00",
        f"t={NOW},v1=" + "0" * 2000,
    ],
)
def test_a_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureHeaderMalformed):
        verify(BODY, header, new_secret(), now=NOW)


def test_unknown_schemes_are_ignored_so_v2_can_be_added_later() -> None:
    secret = new_secret()
    header = sign(BODY, [secret], NOW) + ",v2=deadbeef"
    assert verify(BODY, header, secret, now=NOW) == NOW


def test_every_signature_failure_is_a_signature_invalid_with_a_stable_code() -> None:
    codes = {cls.code for cls in (SignatureHeaderMalformed, SignatureTimestampOutOfRange, SignatureMismatch)}
    assert codes == {"signature_header_malformed", "signature_timestamp_out_of_tolerance", "signature_mismatch"}
    assert issubclass(SignatureMismatch, SignatureInvalid)


def test_secrets_are_prefixed_high_entropy_and_unique() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for secret in secrets:
        assert secret.startswith(SECRET_PREFIX)
        assert len(secret) - len(SECRET_PREFIX) >= 43  # 32 random bytes in URL-safe base64

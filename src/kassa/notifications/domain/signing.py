"""Webhook signatures: `Kassa-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=<hex>...]`.

The MAC covers `f"{t}.".encode() + body`, keyed with the endpoint secret's UTF-8 bytes
(prefix included). Binding the timestamp into the MAC lets receivers reject replays older
than a tolerance without trusting any other header.

During a secret rotation kassa signs with every live secret and sends one `v1` per secret:
a receiver that knows either secret accepts the request, so it can switch at its own pace
within the grace period.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as secrets_module
from typing import TYPE_CHECKING

from kassa.notifications.errors import (
    SignatureHeaderMalformed,
    SignatureMismatch,
    SignatureTimestampOutOfRange,
)
from kassa.shared.invariants import invariant
from kassa.shared.limits import webhook_secret_bytes, webhook_signature_tolerance_s

if TYPE_CHECKING:
    from collections.abc import Sequence

SIGNATURE_HEADER = "Kassa-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a public prefix, not a secret
SCHEME = "v1"
# Headers longer than this are refused before any parsing work (a signature header carries at
# most a timestamp and a few 64-char MACs).
_HEADER_CHARS_MAX = 1024


def new_secret() -> str:
    """A fresh signing secret: 256 bits from the OS CSPRNG, URL-safe, with a recognisable prefix."""
    return SECRET_PREFIX + secrets_module.token_urlsafe(webhook_secret_bytes)


def compute_mac(secret: str, timestamp: int, body: bytes) -> str:
    invariant(secret.startswith(SECRET_PREFIX), "webhook secrets carry the whsec_ prefix")
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The header value for `body`, with one v1 MAC per live secret (current secret first)."""
    invariant(len(secrets) >= 1, "a delivery is signed with at least one secret")
    macs = ",".join(f"{SCHEME}={compute_mac(s, timestamp, body)}" for s in secrets)
    return f"t={timestamp},{macs}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 MACs) of a header value; raises SignatureHeaderMalformed.

    Unknown schemes are skipped so that a future `v2` can be added next to `v1`.
    """
    if len(header) > _HEADER_CHARS_MAX:
        raise SignatureHeaderMalformed("Kassa-Signature header is too long")
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureHeaderMalformed(f"'{part}' is not a key=value pair")
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                raise SignatureHeaderMalformed("t must appear once, as unix seconds")
            timestamp = int(value)
        elif key == SCHEME:
            macs.append(value)
    if timestamp is None or not macs:
        raise SignatureHeaderMalformed("Kassa-Signature needs t= and at least one v1=")
    return timestamp, macs


def verify(
    body: bytes,
    header: str,
    secrets: str | Sequence[str],
    now: int,
    tolerance_s: int = webhook_signature_tolerance_s,
) -> int:
    """Check a received request; returns its signed timestamp.

    Raises SignatureHeaderMalformed, SignatureTimestampOutOfRange, SignatureMismatch (in that
    order of precedence). Every candidate pair is compared in constant time, and all of them
    are compared, so timing reveals neither which MAC nor which secret came close.
    """
    timestamp, macs = parse_header(header)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureTimestampOutOfRange(f"signed at {timestamp}, now {now}: more than {tolerance_s} s apart")
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    matched = False
    for key in keys:
        expected = compute_mac(key, timestamp, body).encode()
        for mac in macs:
            matched |= hmac.compare_digest(expected, mac.encode())
    if not matched:
        raise SignatureMismatch()
    return timestamp

"""The receiver example in docs/webhooks.md (and the README) verifies what kassa signs, and rejects
what it must."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kassa.notifications.domain.signing import new_secret, sign

DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
README = Path(__file__).resolve().parents[3] / "README.md"
BODY = b'{"id":"e1","type":"TransferPosted","data":{"id":"t-1"}}'
NOW = 1_790_000_000


def _receiver_code(path: Path) -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)
    (code,) = [b for b in blocks if "def verify_kassa_signature" in b]
    return code


def test_the_readme_shows_the_same_receiver_as_the_webhook_docs() -> None:
    assert _receiver_code(README) == _receiver_code(DOC)


def receiver_example() -> dict[str, Any]:
    code = _receiver_code(DOC)
    namespace: dict[str, Any] = {"__name__": "kassa_doc_example"}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_the_documented_receiver_accepts_a_kassa_signature() -> None:
    example = receiver_example()
    secret = new_secret()
    example["verify_kassa_signature"](BODY, sign(BODY, [secret], NOW), [secret], now=NOW + 299)


def test_the_documented_receiver_accepts_either_secret_during_rotation() -> None:
    example = receiver_example()
    old, new = new_secret(), new_secret()
    header = sign(BODY, [new, old], NOW)
    example["verify_kassa_signature"](BODY, header, [old], now=NOW)
    example["verify_kassa_signature"](BODY, header, [new], now=NOW)


@pytest.mark.parametrize(
    ("body", "skew", "secret_matches"),
    [
        (BODY + b" ", 0, True),  # tampered body
        (BODY, 301, True),  # outside the 300 s tolerance
        (BODY, -301, True),
        (BODY, 0, False),  # another secret
    ],
)
def test_the_documented_receiver_rejects_bad_requests(body: bytes, skew: int, secret_matches: bool) -> None:
    example = receiver_example()
    secret = new_secret()
    header = sign(BODY, [secret], NOW)
    with pytest.raises(example["BadSignature"]):
        example["verify_kassa_signature"](body, header, [secret if secret_matches else new_secret()], now=NOW + skew)


def test_the_documented_receiver_rejects_a_malformed_header() -> None:
    example = receiver_example()
    for header in ("", "t=1", "v1=ab", "t=x,v1=ab", f"t={NOW},v1=\u00e9"):
        with pytest.raises(example["BadSignature"]):
            example["verify_kassa_signature"](BODY, header, [new_secret()], now=NOW)

"""The Idempotency-Key records' JSON document carries each hash and body as standard, padded
base64 (what PostgreSQL's `decode(x, 'base64')` reads), every byte value intact."""

from __future__ import annotations

import json
from base64 import b64decode, b64encode

from kassa.store.idempotency import IdemClaim, record_rows


def test_hashes_and_bodies_travel_as_padded_standard_base64() -> None:
    every_byte = bytes(range(256))
    done = [
        (IdemClaim("ten_1", "k-1", every_byte[:32]), 201, every_byte),
        (IdemClaim("ten_1", "k-2", b"\xff" * 31), 409, b"{}"),  # lengths that need padding
        (IdemClaim("ten_2", "k\u00e9", b"\xfb\xff"), None, None),  # stored without a response
    ]
    (document,) = record_rows(done)
    rows = json.loads(document)
    expected = [
        {
            "t": c.tenant_id,
            "k": c.key,
            "h": b64encode(c.request_hash).decode(),
            "s": s,
            "b": b and b64encode(b).decode(),
        }
        for c, s, b in done
    ]
    assert rows == expected
    assert [b64decode(r["h"], validate=True) for r in rows] == [c.request_hash for c, _, _ in done]
    assert b64decode(rows[0]["b"], validate=True) == every_byte

"""The request and trace ids of a request: the client's when valid, else random (from one draw
when both are missing), in the formats the logs, the problem documents and the receipts carry."""

from __future__ import annotations

import re

from kassa.api.app import correlation_ids

TRACEPARENT = b"00-" + b"0af7651916cd43dd8448eb211c80319c" + b"-b7ad6b7169203331-01"


def test_missing_ids_are_16_and_32_lower_case_hex_digits_drawn_anew_for_each_request() -> None:
    seen = set()
    for _ in range(200):
        request_id, trace_id = correlation_ids([(b"host", b"x")])
        assert re.fullmatch(r"[0-9a-f]{16}", request_id) and re.fullmatch(r"[0-9a-f]{32}", trace_id)
        seen.add(request_id)
        seen.add(trace_id)
    assert len(seen) == 400
    # Every digit position varies (the two ids are not one id cut in a biased place).
    ids = [correlation_ids([]) for _ in range(200)]
    for position in range(16):
        assert len({r[position] for r, _ in ids}) > 4
    for position in range(32):
        assert len({t[position] for _, t in ids}) > 4


def test_the_clients_valid_ids_are_kept_and_an_invalid_one_is_replaced() -> None:
    assert correlation_ids([(b"x-request-id", b"req-1"), (b"traceparent", TRACEPARENT)]) == (
        "req-1",
        "0af7651916cd43dd8448eb211c80319c",
    )
    request_id, trace_id = correlation_ids([(b"x-request-id", b"req-1")])
    assert request_id == "req-1" and re.fullmatch(r"[0-9a-f]{32}", trace_id)
    request_id, trace_id = correlation_ids([(b"traceparent", TRACEPARENT), (b"x-request-id", b"bad id\n")])
    assert re.fullmatch(r"[0-9a-f]{16}", request_id) and trace_id == "0af7651916cd43dd8448eb211c80319c"
    request_id, trace_id = correlation_ids([(b"x-request-id", b"first"), (b"x-request-id", b"last")])
    assert request_id == "last"  # the last field, as before
    _, trace_id = correlation_ids([(b"traceparent", TRACEPARENT + b"\n")])
    assert trace_id != "0af7651916cd43dd8448eb211c80319c"

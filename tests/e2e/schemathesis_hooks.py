"""Schemathesis hooks for test_api_edge.py: keep webhook URLs on the loopback receiver, and keep
generated data inside the rules that JSON Schema cannot state (each rule says why it is here).

Loaded by the schemathesis CLI through SCHEMATHESIS_HOOKS; the receiver URL comes from
KASSA_FUZZ_RECEIVER_URL. `before_call` runs right before every request of every phase, and
schemathesis re-validates a case after the hook changed it, so a case this hook makes valid is
then judged as a valid one.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import schemathesis

from kassa.shared.limits import metadata_bytes_max, webhook_url_chars_max

_RECEIVER = os.environ.get("KASSA_FUZZ_RECEIVER_URL", "")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]+")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
# Ids from replayed 2xx answers (Idempotent-Replayed: true). Generated Idempotency-Keys are short
# and collide, and a reused key replays the first 201, possibly of a resource deleted since: that
# is idempotency working as designed (the first response again), not a resource that vanished.
_replayed_ids: set[str] = set()


def _conform(value: Any) -> Any:
    """JSON values the way kassa's documented rules want them:
    - 401.0 is an integer to JSON Schema but not to kassa, which refuses it on purpose (issue 6;
      the schema says so in words and with `format: int64`): integral floats go as integer literals;
    - PostgreSQL text cannot hold NUL and JSON cannot carry a lone surrogate: both are refused by
      design, so they are dropped from generated strings;
    - metadata is bounded in encoded bytes, which JSON Schema cannot count: larger metadata is sent
      empty. (The bad-input table in test_ledger_bad_input.py covers every one of these refusals.)
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str):
        return _SURROGATE.sub("", value.replace("\x00", ""))
    if isinstance(value, list):
        return [_conform(v) for v in value]
    if isinstance(value, dict):
        conformed = {_conform(k): _conform(v) for k, v in value.items()}
        metadata = conformed.get("metadata")
        if isinstance(metadata, dict) and len(json.dumps(metadata, ensure_ascii=False).encode()) > metadata_bytes_max:
            conformed["metadata"] = {}
        return conformed
    return value


def conform_content(body: dict[str, Any]) -> None:
    """Pay-per-view content follows rules across fields that JSON Schema cannot state (each is
    refused with a 400 naming it, as tests/unit/payments/test_ppv_content_and_entitlement_rules.py
    shows): the holders' shares sum to 10,000 and name each customer once; `duration_s` goes with
    a from_first_play window only; `ends_at` follows `starts_at`; `replay_days` needs `ends_at`;
    on PUT a body id names the path's content."""
    holders = body.get("rights_holders")
    if isinstance(holders, list) and holders and all(isinstance(h, dict) for h in holders):
        count = len(holders)
        for index, holder in enumerate(holders):
            holder["share_bps"] = 10_000 // count + (1 if index < 10_000 % count else 0)
            if isinstance(holder.get("customer_id"), str):
                holder["customer_id"] = f"{holder['customer_id'][:40]}-{index}"
    access = body.get("access")
    if isinstance(access, dict):
        for name in ("starts_at", "ends_at"):  # "date-time" is a format, which JSON Schema only hints
            if isinstance(access.get(name), str) and not _DATE_TIME.fullmatch(access[name]):
                access[name] = None
        if access.get("window", "fixed") == "fixed":
            access.pop("duration_s", None)
        elif access.get("duration_s") is None:
            access["duration_s"] = 3600
        if access.get("starts_at") is not None and access.get("ends_at") is not None:
            access.pop("starts_at")  # no ordering to break
        if access.get("ends_at") is None:
            access.pop("replay_days", None)


def loopback_url(url: str) -> str:
    """Any generated URL becomes the receiver's; a too-long one stays too long (still on loopback),
    and the empty string stays empty. Nothing else can reach kassa, so no generated host is ever
    resolved or connected to."""
    if not url:
        return url
    if len(url) > webhook_url_chars_max:
        return _RECEIVER + "/" + "x" * max(len(url) - len(_RECEIVER) - 1, 1)
    return _RECEIVER


def _is_webhook_registration(case: Any) -> bool:
    return str(case.operation.method).upper() == "POST" and case.operation.path == "/v1/webhook-endpoints"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not _RECEIVER:
        raise RuntimeError("KASSA_FUZZ_RECEIVER_URL is not set: refusing to send generated webhook URLs")
    if isinstance(case.body, dict | list):
        case.body = _conform(case.body)
    if case.operation.path.startswith("/v1/content") and isinstance(case.body, dict):
        conform_content(case.body)
        if (case.path_parameters or {}).get("id") is not None and case.body.get("id") is not None:
            case.body["id"] = case.path_parameters["id"]  # a body id must name the path's content
    if _is_webhook_registration(case):
        if isinstance(case.body, str | bytes):
            case.body = "{}"  # raw text could still be JSON naming a URL: never send it
        if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
            case.body["url"] = loopback_url(case.body["url"])
    if isinstance(case.query, dict):
        cursor = case.query.get("cursor")
        # A cursor is opaque: only one the API handed out is valid, and no schema can say which
        # strings those are. Any well-formed generated cursor is therefore dropped (first page);
        # malformed ones are kept, since they must be refused.
        if isinstance(cursor, str) and _CURSOR_TEXT.fullmatch(cursor):
            del case.query["cursor"]


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    headers = {k.lower(): v for k, v in dict(response.headers).items()}
    replayed = headers.get("idempotent-replayed")
    if replayed in ("true", ["true"]) and 200 <= response.status_code < 300:
        try:
            found = response.json()
        except ValueError:
            return
        if isinstance(found, dict) and isinstance(found.get("id"), str):
            _replayed_ids.add(found["id"])


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure except "created resource not found" for a resource whose creation
    answer was a replay (see _replayed_ids)."""
    return not (getattr(failure, "code", "") == "ST302" and (case.path_parameters or {}).get("id") in _replayed_ids)

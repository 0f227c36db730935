"""Audit before/after never carry secrets: secret-named keys are redacted at any depth."""

from __future__ import annotations

from kassa.identity.audit import REDACTED, redact


def test_secret_named_values_are_redacted_at_any_depth() -> None:
    value = {
        "id": "key_1",
        "secret": "kassa_key_1_abc",
        "nested": [{"webhook_secret": "whsec", "url": "https://x"}, {"password": "p", "note": "ok"}],
        "config": {"api_key": "k", "secret_hash": "00ff", "rotated_from": None},
    }
    shown = redact(value)
    assert shown == {
        "id": "key_1",
        "secret": REDACTED,
        "nested": [{"webhook_secret": REDACTED, "url": "https://x"}, {"password": REDACTED, "note": "ok"}],
        "config": {"api_key": REDACTED, "secret_hash": REDACTED, "rotated_from": None},
    }
    assert "kassa_key_1_abc" not in repr(shown) and "whsec" not in repr(shown)


def test_plain_values_pass_unchanged() -> None:
    assert redact([1, "a", None, {"scopes": ["admin"]}]) == [1, "a", None, {"scopes": ["admin"]}]

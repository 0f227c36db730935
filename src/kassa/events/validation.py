"""Validating events against their JSON Schemas (tests, and producers that want to check)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import msgspec
from jsonschema import Draft202012Validator, FormatChecker

from kassa.events.errors import SchemaIncompatible
from kassa.events.schema_compat import SCHEMAS_DIR, load_dir

if TYPE_CHECKING:
    from kassa.events.envelope import Envelope


@cache
def _validators() -> dict[str, Any]:
    checker = FormatChecker()
    return {
        name: Draft202012Validator(schema, format_checker=checker) for name, schema in load_dir(SCHEMAS_DIR).items()
    }


def schema_names() -> list[str]:
    return sorted(_validators())


def validate_event(event: Envelope) -> None:
    """Raises SchemaIncompatible when the envelope or its data does not match its schema."""
    validators = _validators()
    data_schema = validators.get(f"{event.type}.v{event.version}")
    if data_schema is None:
        raise SchemaIncompatible(f"no schema for {event.type} v{event.version}")
    as_json = msgspec.to_builtins(event)
    for name, validator, value in (
        ("envelope.v1", validators["envelope.v1"], as_json),
        (f"{event.type}.v{event.version}", data_schema, as_json["data"]),
    ):
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            raise SchemaIncompatible(f"{name}: {errors[0].message} at {list(errors[0].path)}")

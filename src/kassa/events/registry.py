"""Which consumers run in `kassa worker consumers`: every handler other contexts contribute.

Contexts are imported lazily, when a worker starts: importing the events package stays cheap
and never pulls in the contexts that react to events.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

from kassa.events.errors import ConsumerNotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from kassa.events.inbox import Handler

# (module, function returning that context's handlers). Add a context's entry point here.
_SOURCES: tuple[tuple[str, str], ...] = (("kassa.notifications.consumers", "handlers"),)


def consumer_handlers() -> list[Handler]:
    found: list[Handler] = []
    for module_name, function in _SOURCES:
        module = importlib.import_module(module_name)
        factory = cast("Callable[[], list[Handler]]", getattr(module, function))
        found.extend(factory())
    names = [h.name for h in found]
    if len(names) != len(set(names)):
        raise ValueError(f"consumer names must be unique: {names}")
    return found


def handler_named(name: str, handlers: list[Handler] | None = None) -> Handler:
    """Raises ConsumerNotFound."""
    for handler in consumer_handlers() if handlers is None else handlers:
        if handler.name == name:
            return handler
    raise ConsumerNotFound(f"no consumer named {name!r}")

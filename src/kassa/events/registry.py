"""Which consumers run in `kassa worker consumers`: every handler other contexts contribute.

Contexts are imported lazily so that importing the events package stays cheap and a context
that is not built yet (its module missing) simply contributes nothing.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, cast

from kassa.events.errors import ConsumerNotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from kassa.events.inbox import Handler

log = logging.getLogger(__name__)

# (module, function returning that context's handlers). Add a context's entry point here.
_SOURCES: tuple[tuple[str, str], ...] = (("kassa.notifications.consumers", "handlers"),)


def consumer_handlers() -> list[Handler]:
    found: list[Handler] = []
    for module_name, function in _SOURCES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only a missing contributing module is tolerated, never a broken import inside it.
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            log.debug("consumer source %s not available yet", module_name)
            continue
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

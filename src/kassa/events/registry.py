"""What the event roles run: the handlers and background loops handed over by the wiring.

The events context knows nothing of the contexts that react to events, not even their module
names: the platform's wiring (bootstrap) builds an `EventWiring` and hands it to the runtime and
the operator tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kassa.events.errors import ConsumerNotFound

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Sequence

    from kassa.events.handler import Handler
    from kassa.store.pool import Pool


@dataclass(frozen=True)
class EventWiring:
    handlers: Sequence[Handler] = ()
    loops: Sequence[tuple[str, Callable[[Pool, asyncio.Event], Awaitable[None]]]] = field(default=())

    def __post_init__(self) -> None:
        names = [h.name for h in self.handlers]
        if len(names) != len(set(names)):
            raise ValueError(f"consumer names must be unique: {names}")

    def handler_named(self, name: str) -> Handler:
        """Raises ConsumerNotFound."""
        for handler in self.handlers:
            if handler.name == name:
                return handler
        raise ConsumerNotFound(f"no consumer named {name!r}")

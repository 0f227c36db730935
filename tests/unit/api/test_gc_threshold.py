"""The API process collects its young generation less often (a named limit), keeping the older
generations' ratios as they were."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from kassa.settings import Settings
from kassa.shared.heap import set_young_threshold
from kassa.shared.limits import api_gc_young_threshold_objects

if TYPE_CHECKING:
    import pytest


def test_only_the_young_threshold_moves() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        set_young_threshold(api_gc_young_threshold_objects)
        assert gc.get_threshold() == (api_gc_young_threshold_objects, 11, 12)
        assert api_gc_young_threshold_objects > 700  # the point of it: fewer young collections
    finally:
        gc.set_threshold(*before)


async def test_the_api_process_sets_it_once_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from kassa.api import app as api_app

    class Services:
        async def close(self) -> None:
            return None

    async def build_services(settings: object) -> Services:
        return Services()

    monkeypatch.setenv("KASSA_LOG_LEVEL", "WARNING")
    monkeypatch.setattr(api_app, "build_services", build_services)
    monkeypatch.setattr(api_app, "freeze_startup_heap", lambda: None)  # not this test's heap
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        built = api_app.create_app(Settings.from_env())
        async with built.router.lifespan_context(built):
            assert gc.get_threshold() == (api_gc_young_threshold_objects, 10, 10)
    finally:
        gc.set_threshold(*before)

"""The pay-per-view service on the application role (row-level security applies), with its own batcher."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from kassa.ledger import Batcher, LedgerService
from support.ppv import ppv_service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.payments.ppv import PayPerView
    from kassa.store.pool import Pool


@pytest.fixture
async def ppv(app_pool: Pool) -> AsyncIterator[PayPerView]:
    batcher = Batcher(app_pool)
    batcher.start()
    try:
        yield ppv_service(app_pool, LedgerService(app_pool, batcher))
    finally:
        await batcher.stop()

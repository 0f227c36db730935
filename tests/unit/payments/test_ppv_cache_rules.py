"""The entitlement cache never stores a row read before a write invalidated its key, and stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from kassa.payments.domain.entitlements import Entitlement
from kassa.payments.entitlement_cache import EntitlementCache

ROW = Entitlement("t", "e", "c", "k", "p", "active", datetime(2026, 1, 1, tzinfo=UTC), None)


def test_a_read_that_raced_a_write_does_not_put_the_old_row_back() -> None:
    cache = EntitlementCache()
    seen = cache.generation("k")  # a check starts reading: no entitlement yet
    cache.invalidate("k")  # meanwhile a purchase commits and invalidates
    cache.put("k", seen, None)  # the check's stale "none" arrives
    assert cache.get("k") == (False, None)
    cache.put("k", cache.generation("k"), ROW)
    assert cache.get("k") == (True, ROW)


def test_the_cache_evicts_the_least_recently_used_beyond_its_bound() -> None:
    cache = EntitlementCache(entries_max=2)
    for key in ("a", "b"):
        cache.put(key, 0, ROW)
    assert cache.get("a")[0]
    cache.put("c", 0, None)
    assert [cache.get(k)[0] for k in ("a", "b", "c")] == [True, False, True]


def test_an_entry_older_than_its_ttl_is_read_again() -> None:
    cache = EntitlementCache(ttl_s=-1.0)
    cache.put("a", 0, ROW)
    assert cache.get("a") == (False, None)

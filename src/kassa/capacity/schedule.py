"""The event schedule: live events with a start, an end, an expected audience and a price.

```yaml
events:
  - name: cup-final                 # [a-z0-9-], unique; names the rendered objects
    start: 2026-12-18T19:00:00Z     # RFC 3339 with a zone
    end: 2026-12-18T22:00:00Z
    expected_audience: 400000       # people expected to watch (or visit)
    price: {amount: 999, currency: EUR}   # integer minor units; 0 for a free event
    conversion_rate: 0.12           # optional: overrides the plan's default for this event
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from kassa.capacity.errors import InvalidSchedule
from kassa.shared.limits import capacity_audience_max, capacity_events_max

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    start: datetime
    end: datetime
    expected_audience: int
    price_minor: int
    currency: str
    conversion_rate: float | None = None


def _instant(raw: Any, field: str, name: str) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidSchedule(f"event {name}: {field} is not RFC 3339: {raw!r}") from exc
    else:
        raise InvalidSchedule(f"event {name}: {field} is missing or not a time")
    if value.tzinfo is None:
        raise InvalidSchedule(f"event {name}: {field} needs a time zone")
    return value


def _count(raw: Any, field: str, name: str, high: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= high:
        raise InvalidSchedule(f"event {name}: {field} must be an integer from 0 to {high}")
    return raw


def parse_event(raw: Any) -> Event:
    """One event from its mapping. Raises InvalidSchedule."""
    if not isinstance(raw, dict):
        raise InvalidSchedule("each event is a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidSchedule(f"event name {name!r} must be 1-40 of [a-z0-9-]")
    start, end = _instant(raw.get("start"), "start", name), _instant(raw.get("end"), "end", name)
    if end <= start:
        raise InvalidSchedule(f"event {name}: end must be after start")
    price = raw.get("price")
    if not isinstance(price, dict) or not isinstance(price.get("currency"), str):
        raise InvalidSchedule(f"event {name}: price is {{amount: <minor units>, currency: <ISO 4217>}}")
    if not _CURRENCY.match(price["currency"]):
        raise InvalidSchedule(f"event {name}: currency must be an ISO 4217 code")
    rate = raw.get("conversion_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1):
        raise InvalidSchedule(f"event {name}: conversion_rate must be between 0 and 1")
    return Event(
        name=name,
        start=start,
        end=end,
        expected_audience=_count(raw.get("expected_audience"), "expected_audience", name, capacity_audience_max),
        price_minor=_count(price.get("amount"), "price.amount", name, 2**63 - 1),
        currency=price["currency"],
        conversion_rate=None if rate is None else float(rate),
    )


def parse_schedule(text: str) -> list[Event]:
    """The events of a schedule file, by start time. Raises InvalidSchedule."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidSchedule(f"not YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise InvalidSchedule("the schedule is a mapping with a list under `events`")
    if len(doc["events"]) > capacity_events_max:
        raise InvalidSchedule(f"at most {capacity_events_max} events per schedule")
    events = [parse_event(e) for e in doc["events"]]
    names = [e.name for e in events]
    if len(set(names)) != len(names):
        raise InvalidSchedule("event names must be unique")
    return sorted(events, key=lambda e: e.start)


__all__ = ["Event", "parse_event", "parse_schedule"]

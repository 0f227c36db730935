"""Typed failures of capacity planning.

KassaError
└── CapacityError          capacity_error
    ├── InvalidSchedule    invalid_schedule: the events file is malformed or inconsistent
    └── NoUnitCost         no_unit_cost: no benchmark result to take the cost per transfer from
"""

from __future__ import annotations

from kassa.shared.errors import InvalidRequest


class CapacityError(InvalidRequest):
    code = "capacity_error"
    title = "Capacity plan failed"


class InvalidSchedule(CapacityError):
    code = "invalid_schedule"
    title = "Invalid event schedule"


class NoUnitCost(CapacityError):
    code = "no_unit_cost"
    title = "No measured cost per transfer"


__all__ = ["CapacityError", "InvalidSchedule", "NoUnitCost"]

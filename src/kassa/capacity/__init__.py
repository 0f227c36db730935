"""Pre-warming from an event schedule: `kassa capacity plan` (see docs/runbooks/live-event.md)."""

from kassa.capacity.costs import measured_unit_cost, unit_cost_from
from kassa.capacity.model import Assumptions, Capacity, Step, UnitCost, capacity_for, event_load, plan_steps
from kassa.capacity.render import Target, plan_document, render_kubernetes, render_tfvars
from kassa.capacity.schedule import Event, parse_schedule

__all__ = [
    "Assumptions",
    "Capacity",
    "Event",
    "Step",
    "Target",
    "UnitCost",
    "capacity_for",
    "event_load",
    "measured_unit_cost",
    "parse_schedule",
    "plan_document",
    "plan_steps",
    "render_kubernetes",
    "render_tfvars",
    "unit_cost_from",
]

"""Disaster recovery: the failover and point-in-time-restore drill (`kassa dr drill`)."""

from kassa.dr.drill import Drill, DrillConfig
from kassa.dr.report import render_text

__all__ = ["Drill", "DrillConfig", "render_text"]

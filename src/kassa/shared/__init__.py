"""Shared kernel: money, ids, clock, errors, invariants and limits used by every context."""

"""Logs, metrics and traces: the cross-cutting concerns that wrap the core without leaking into it."""

from __future__ import annotations

__all__ = ["setup"]


def setup(role: str) -> None:
    """Per-process observability for `role` ("api", "worker"): OpenTelemetry tracing when an OTLP
    endpoint is configured, and the sampler of the process's own CPU, memory and pool gauges."""
    from kassa.observability import process, tracing

    tracing.configure(role)
    process.start_sampler(role)

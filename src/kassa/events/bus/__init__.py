"""Stream adapters behind the `EventBus` port; `create_bus` picks the configured one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.events.bus.base import Delivery, EventBus, Message, Subscription

if TYPE_CHECKING:
    from kassa.settings import Settings

__all__ = ["Delivery", "EventBus", "Message", "Subscription", "create_bus"]


def create_bus(settings: Settings) -> EventBus:
    """The adapter for the configured stream (not yet connected). Kafka only when asked for."""
    if settings.event_bus == "kafka":
        from kassa.events.bus.kafka import KafkaBus
        from kassa.events.bus.kafka_security import KafkaSecurity

        assert settings.kafka_bootstrap is not None  # event_bus is "kafka" only when it is set
        return KafkaBus(
            settings.kafka_bootstrap,
            security=KafkaSecurity.from_settings(settings),
            replication_factor=settings.kafka_replication_factor,
        )
    from kassa.events.bus.nats import NatsBus

    if not settings.nats_url:
        from kassa.events.errors import EventBusUnavailable

        raise EventBusUnavailable("KASSA_NATS_URL is not set (kassa up sets it for its children)")
    return NatsBus(
        settings.nats_url,
        user=settings.nats_user,
        password=settings.nats_password,
        token=settings.nats_token,
        creds=settings.nats_creds,
    )

"""Kafka adapter of the `EventBus` port (aiokafka).

One topic, `kassa.events`, carries every batch message, all under one key (hence in one
partition): the relay publishes batches one after another, so one partition holds them in
batch order, and with it every aggregate's events in commit order. A batch of up to
`relay_batch_max` events per message keeps one partition far above the ledger's rate.

The producer is idempotent with acks=all, which removes duplicates from its own retries within
a session. It cannot deduplicate a republish after a relay restart: that duplicate reaches the
consumers, whose recorded position drops it. Each kassa consumer is a consumer group with
manual offset commits after its position transaction.

TLS and SASL (`KafkaSecurity`, from the KASSA_KAFKA_* settings) apply to every client alike:
the admin client that makes sure the topic exists, the producer and each consumer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from kassa.events import limits
from kassa.events.bus.base import SUBJECT_PREFIX, Delivery, Message, Subscription
from kassa.events.bus.kafka_security import KafkaSecurity
from kassa.events.errors import EventBusUnavailable
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("kassa.events.kafka")
TOPIC = SUBJECT_PREFIX
BATCH_KEY = b"kassa-batches"  # one key: every batch in one partition, in order


def group_id(consumer: str) -> str:
    return f"kassa.{consumer}"


class _KafkaDelivery:
    __slots__ = ("_consumer", "_record", "_tp")

    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition, record: Any) -> None:
        self._consumer = consumer
        self._tp = tp
        self._record = record

    @property
    def raw(self) -> bytes:
        value: bytes = self._record.value
        return value

    @property
    def redelivered(self) -> bool:
        return False  # Kafka does not tell; the consumer position does not need to know

    async def ack(self) -> None:
        await self._consumer.commit({self._tp: OffsetAndMetadata(self._record.offset + 1, "")})

    async def in_progress(self) -> None:
        return None  # offsets are not leased: nothing to extend


class _KafkaSubscription:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def fetch(self, max_count: int, timeout_s: float) -> Sequence[Delivery]:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_count)
        return [_KafkaDelivery(self._consumer, tp, r) for tp, records in batches.items() for r in records]

    async def lag(self) -> int:
        partitions = list(self._consumer.assignment())
        if not partitions:
            return 0
        ends = await self._consumer.end_offsets(partitions)
        total = 0
        for tp in partitions:
            committed = await self._consumer.committed(tp)
            total += max(0, ends[tp] - (committed or 0))
        return total

    async def close(self) -> None:
        await self._consumer.stop()


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        *,
        idempotent: bool = True,
        session_timeout_ms: int = 10_000,
        partitions: int = limits.kafka_partitions,
        security: KafkaSecurity | None = None,
        replication_factor: int = limits.kafka_replication_factor_default,
    ) -> None:
        self._bootstrap = bootstrap
        self.security = security or KafkaSecurity()
        self._client_kwargs: dict[str, Any] | None = None
        # Always True in production. Only the test broker (tansu, memory storage) rejects the
        # InitProducerId v0 request that aiokafka sends, so its fixture turns it off.
        self.idempotent = idempotent
        self._session_timeout_ms = session_timeout_ms
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._producer: AIOKafkaProducer | None = None

    def _client(self) -> dict[str, Any]:
        """The connection settings of every client, built once (one SSL context for all)."""
        if self._client_kwargs is None:
            self._client_kwargs = {"bootstrap_servers": self._bootstrap, **self.security.client_kwargs()}
        return self._client_kwargs

    async def connect(self) -> None:
        log.info("connecting to Kafka", extra={"bootstrap": self._bootstrap, "security": self.security.describe()})
        try:
            await self._ensure_topic()
            producer = AIOKafkaProducer(
                **self._client(),
                enable_idempotence=self.idempotent,
                acks="all",
                linger_ms=2,
            )
            await producer.start()
        except (OSError, KafkaError) as exc:
            raise EventBusUnavailable(f"cannot connect to Kafka at {self._bootstrap}: {exc!r}") from exc
        self._producer = producer

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(**self._client())
        await admin.start()
        try:
            if TOPIC in await admin.list_topics():
                return
            topic = NewTopic(TOPIC, num_partitions=self._partitions, replication_factor=self._replication_factor)
            response = await admin.create_topics([topic])
            # The broker answers per topic; a refusal (a replication factor above the broker count,
            # ...) is an error code there, not an exception.
            for _, code, *message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    detail = message[0] if message else ""
                    raise EventBusUnavailable(f"Kafka refused to create topic {TOPIC}: error {code} {detail}".strip())
        except TopicAlreadyExistsError:
            pass  # another process created it first
        finally:
            await admin.close()

    async def publish(self, message: Message) -> None:
        invariant(self._producer is not None, "connect() before publishing")
        producer = self._producer
        assert producer is not None  # for mypy; invariant() above already guarantees it
        headers = [("kassa-batch", str(message.batch_no).encode()), ("kassa-id", message.dedup_id.encode())]
        try:
            await producer.send_and_wait(TOPIC, message.payload, key=BATCH_KEY, headers=headers)
        except KafkaError as exc:
            raise EventBusUnavailable(f"Kafka publish failed: {exc!r}") from exc

    async def subscribe(self, consumer: str) -> Subscription:
        kafka_consumer = AIOKafkaConsumer(
            TOPIC,
            **self._client(),
            group_id=group_id(consumer),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(100, self._session_timeout_ms // 4),
        )
        try:
            await kafka_consumer.start()
        except (OSError, KafkaError) as exc:
            raise EventBusUnavailable(f"cannot subscribe {consumer}: {exc!r}") from exc
        return _KafkaSubscription(kafka_consumer)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

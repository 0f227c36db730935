"""NATS JetStream adapter of the `EventBus` port.

One stream (`KASSA_EVENTS`, file storage) holds every batch message on subject
`kassa.events.batch`, in one total order. The batch's deduplication id (stream id + batch
number) travels as `Nats-Msg-Id`, which JetStream deduplicates within
`nats_duplicate_window_s`: a relay that dies between publishing and marking republishes the
same batch under the same id and the stream stores it once.

Each kassa consumer is one durable pull consumer with explicit acks.

Credentials: user and password in the URL (`nats://user:pass@host:port`, what the embedded
server's URL carries) or given separately, a token, or a `.creds` file (JWT + NKey seed). The
URL is never logged with its password.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from kassa.events import limits
from kassa.events.bus.base import SUBJECT_PREFIX, Delivery, Message, Subscription
from kassa.events.errors import EventBusUnavailable
from kassa.settings import without_password
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence

STREAM = "KASSA_EVENTS"
_PUBLISH_TIMEOUT_S = 5.0  # one publish ack; the relay retries the batch after it
BATCH_SUBJECT = f"{SUBJECT_PREFIX}.batch"


def durable_name(consumer: str) -> str:
    return "kassa-" + re.sub(r"[^A-Za-z0-9_\-]", "_", consumer)


class _NatsDelivery:
    __slots__ = ("_msg",)

    def __init__(self, msg: Any) -> None:
        self._msg = msg

    @property
    def raw(self) -> bytes:
        data: bytes = self._msg.data
        return data

    @property
    def redelivered(self) -> bool:
        return bool(self._msg.metadata.num_delivered > 1)

    async def ack(self) -> None:
        await self._msg.ack()

    async def in_progress(self) -> None:
        await self._msg.in_progress()


class _NatsSubscription:
    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def fetch(self, max_count: int, timeout_s: float) -> Sequence[Delivery]:
        try:
            msgs = await self._sub.fetch(max_count, timeout=timeout_s)
        except TimeoutError:  # nats raises both its own subclass and the plain asyncio one
            return []
        return [_NatsDelivery(m) for m in msgs]

    async def lag(self) -> int:
        info = await self._sub.consumer_info()
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        try:
            await self._sub.unsubscribe()
        except nats.errors.Error:
            pass  # the connection is already gone; the durable consumer lives on in the server


class NatsBus:
    def __init__(
        self,
        url: str,
        *,
        ack_wait_s: float = limits.consumer_ack_wait_s,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        creds: str | None = None,
    ) -> None:
        self._url = url
        self._ack_wait_s = ack_wait_s
        self._auth: dict[str, str] = {
            k: v
            for k, v in {"user": user, "password": password, "token": token, "user_credentials": creds}.items()
            if v
        }
        self._nc: Any = None
        self._js: Any = None

    async def connect(self) -> None:
        try:
            self._nc = await nats.connect(
                self._url,
                name="kassa",
                max_reconnect_attempts=-1,  # ride out a broker restart; the relay keeps retrying
                reconnect_time_wait=0.5,
                connect_timeout=5,
                **self._auth,
            )
        except (OSError, nats.errors.Error) as exc:
            where = without_password(self._url)
            raise EventBusUnavailable(f"cannot connect to NATS at {where}: {exc}") from exc
        self._js = self._nc.jetstream()
        await self._ensure_stream()

    async def _ensure_stream(self) -> None:
        try:
            await self._js.stream_info(STREAM)
            return
        except nats.js.errors.NotFoundError:
            pass
        # Adding a stream with an identical config is idempotent, so two processes racing here
        # both succeed.
        await self._js.add_stream(
            api.StreamConfig(
                name=STREAM,
                subjects=[f"{SUBJECT_PREFIX}.>"],
                storage=api.StorageType.FILE,
                duplicate_window=limits.nats_duplicate_window_s,
            )
        )

    def _require(self) -> Any:
        invariant(self._js is not None, "connect() before using the bus")
        return self._js

    async def publish(self, message: Message) -> None:
        js = self._require()
        headers = {"Nats-Msg-Id": message.dedup_id, "Kassa-Batch": str(message.batch_no)}
        try:
            await js.publish(BATCH_SUBJECT, message.payload, timeout=_PUBLISH_TIMEOUT_S, headers=headers)
        except (TimeoutError, nats.errors.Error) as exc:
            raise EventBusUnavailable(f"JetStream publish failed: {exc!r}") from exc

    async def subscribe(self, consumer: str) -> Subscription:
        js = self._require()
        name = durable_name(consumer)
        config = api.ConsumerConfig(
            durable_name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self._ack_wait_s,
            max_deliver=-1,  # kassa dead-letters by itself after consumer_attempts_max
            filter_subject=f"{SUBJECT_PREFIX}.>",
        )
        try:
            sub = await js.pull_subscribe(f"{SUBJECT_PREFIX}.>", durable=name, stream=STREAM, config=config)
        except nats.errors.Error as exc:
            raise EventBusUnavailable(f"cannot subscribe {consumer}: {exc!r}") from exc
        return _NatsSubscription(sub)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = self._js = None

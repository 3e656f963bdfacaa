"""The producer-side client platform teams use to publish events, items and identity links."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, IdentityLink, ItemDelete, ItemUpsert, encode
from stream.kafka_settings import client_kwargs


class FusionrecProducer:
    """Publishes contract messages to the right topic with the right key.

        async with FusionrecProducer(cfg) as producer:
            await producer.send_event(BehaviorEvent(...))

    ``send_*`` return once the message is queued; ``flush`` waits until the broker has them all.
    Events are keyed by platform user id, items by item id, links by platform user id.
    """

    def __init__(self, cfg: Config, **producer_options: Any) -> None:
        self.cfg = cfg
        options = {"acks": "all", "linger_ms": 5, "enable_idempotence": True, "max_batch_size": 256 * 1024}
        options.update(producer_options)
        self._producer = AIOKafkaProducer(**client_kwargs(cfg.kafka), **options)

    async def __aenter__(self) -> FusionrecProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.flush()
        await self._producer.stop()

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> Any:
        return await self._producer.send(topic, key=key, value=value)

    async def send_event(self, event: BehaviorEvent) -> Any:
        if not event.event_id:
            event = BehaviorEvent(**{**_fields(event), "event_id": uuid.uuid4().hex})
        topic = self.cfg.kafka.events_topic(event.platform)
        return await self.send_raw(topic, event.user_id.encode(), encode(event))

    async def send_item(self, item: ItemUpsert | ItemDelete) -> Any:
        return await self.send_raw(self.cfg.kafka.items_topic, item.item_id.encode(), encode(item))

    async def send_link(self, link: IdentityLink) -> Any:
        return await self.send_raw(self.cfg.kafka.identity_topic, link.user_id.encode(), encode(link))

    async def flush(self) -> None:
        await self._producer.flush()


def _fields(event: BehaviorEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__slots__}  # type: ignore[attr-defined]

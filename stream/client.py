"""The producer-side client platform teams use to publish events, items and identity links."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, IdentityLink, ItemDelete, ItemUpsert, encode, identity_key
from stream.kafka_settings import client_kwargs


class FusionrecProducer:
    """Publishes contract messages to the right topic with the right key.

        async with FusionrecProducer(cfg) as producer:
            await producer.send_event(BehaviorEvent(...))

    ``send_*`` return once the message is queued; ``flush`` waits until the broker has them all.
    Events are keyed by platform user id, items by item id, links by ``<platform>:<user id>``.

    The items and identity topics are compacted: the last message of a key is what every worker
    starting later sees.  A tombstone (``send_item_tombstone``, ``send_unlink``) deletes an item or
    a link and is itself removed by compaction after the topic's ``delete.retention.ms``.
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

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        return await self._producer.send(topic, key=key, value=value)

    async def send_event(self, event: BehaviorEvent) -> Any:
        if not event.event_id:
            event = BehaviorEvent(**{**_fields(event), "event_id": uuid.uuid4().hex})
        topic = self.cfg.kafka.events_topic(event.platform)
        return await self.send_raw(topic, event.user_id.encode(), encode(event))

    async def send_item(self, item: ItemUpsert | ItemDelete) -> Any:
        return await self.send_raw(self.cfg.kafka.items_topic, item.item_id.encode(), encode(item))

    async def send_item_tombstone(self, item_id: str) -> Any:
        """Delete an item with a tombstone (no value): unlike an ``ItemDelete``, compaction removes it."""
        return await self.send_raw(self.cfg.kafka.items_topic, item_id.encode(), None)

    async def send_link(self, link: IdentityLink) -> Any:
        key = identity_key(link.platform, link.user_id)
        return await self.send_raw(self.cfg.kafka.identity_topic, key, encode(link))

    async def send_unlink(self, platform: str, user_id: str) -> Any:
        """Remove the link of a platform user (a tombstone): their events count as their own person again."""
        return await self.send_raw(self.cfg.kafka.identity_topic, identity_key(platform, user_id), None)

    async def flush(self) -> None:
        await self._producer.flush()


def _fields(event: BehaviorEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__slots__}  # type: ignore[attr-defined]

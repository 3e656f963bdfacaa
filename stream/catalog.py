"""Replicates the item catalog and the identity links into every worker.

Every worker reads all partitions of the items and identity topics from the beginning (no consumer
group), so each one holds the whole catalog in its index and the whole identity map.  ``ready`` is set
once the follower has caught up with the end offsets it found at start; ``sync`` waits until it has
caught up with the end offsets of *now* (used when an event names an item not seen yet).

Both topics are compacted, so a delete can be a tombstone (a null value): on the items topic it
deletes the item its key names, on the identity topic it removes the link of ``<platform>:<user_id>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError

from fusionrec.config import Config
from fusionrec.contracts import (
    DeadLetter,
    IdentityLink,
    ItemDelete,
    ItemUpsert,
    decode_identity,
    decode_item,
    identity_key_parts,
    item_key_id,
)
from fusionrec.core import Recommender, plan_item_changes
from fusionrec.errors import ValidationError
from stream.kafka_settings import client_kwargs

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]


class CatalogFollower:
    def __init__(self, cfg: Config, recommender: Recommender, dead_letter: DeadLetterSink) -> None:
        self.cfg = cfg
        self.recommender = recommender
        self.dead_letter = dead_letter
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self.items_seen = 0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_kwargs(self.cfg.kafka), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20
        )
        await self._consumer.start()
        topics = [self.cfg.kafka.items_topic, self.cfg.kafka.identity_topic]
        for topic in topics:
            parts = await self._wait_partitions(topic)
            self._partitions += [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)

    async def _wait_partitions(self, topic: str) -> set[int]:
        assert self._consumer is not None
        for _ in range(100):
            parts = self._consumer.partitions_for_topic(topic)
            if parts:
                return parts
            await self._consumer._client.force_metadata_update()  # noqa: SLF001 - no public equivalent
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} has no partitions; were the topics created?")

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def run(self) -> None:
        """Follow both topics forever, applying changes in micro-batches."""
        assert self._consumer is not None
        target = await self._consumer.end_offsets(self._partitions)
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            except ConsumerStoppedError:  # stop() during a clean shutdown
                return
            for tp, records in batches.items():
                await self._apply(tp, records)
            if not self.ready.is_set() and await self._caught_up(target):
                log.info("catalog ready: %d items, %d identity links", len(self.recommender.store), len(self.recommender.identity))
                self.ready.set()

    async def _caught_up(self, target: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in target.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def sync(self, timeout_s: float) -> bool:
        """Wait until everything published to the catalog topics so far has been applied."""
        assert self._consumer is not None
        target = await self._consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self._caught_up(target):
                return True
            await asyncio.sleep(0.01)
        return False

    async def _apply(self, tp: TopicPartition, records: list) -> None:  # type: ignore[type-arg]
        items: list[ItemUpsert | ItemDelete] = []
        cfg = self.cfg
        for record in records:
            try:
                if tp.topic == cfg.kafka.items_topic:
                    if record.value is None:  # a tombstone: deletes go by item id, the platform plays no part
                        item_id = item_key_id(record.key, limits=cfg.limits)
                        items.append(ItemDelete(item_id, self.recommender.store.platform_of(item_id) or ""))
                    else:
                        items.append(decode_item(record.value, platforms=cfg.platforms, limits=cfg.limits))
                elif record.value is None:
                    platform, user_id = identity_key_parts(record.key, platforms=cfg.platforms, limits=cfg.limits)
                    self.recommender.identity.unlink(platform, user_id)
                else:
                    link: IdentityLink = decode_identity(record.value, platforms=cfg.platforms, limits=cfg.limits)
                    self.recommender.identity.link(link)
            except ValidationError as exc:
                await self.dead_letter(
                    DeadLetter(exc.reason, exc.detail, tp.topic, tp.partition, record.offset, record.value or b"")
                )
        if items:
            # encoding is CPU-bound: run it off the event loop so heartbeats and other agents go on
            changes = plan_item_changes(items)
            vectors = await asyncio.get_running_loop().run_in_executor(
                None, self.recommender.encode_item_changes, changes
            )
            self.recommender.apply_item_changes(changes, vectors)  # index changes stay on the loop thread
            self.items_seen += len(items)

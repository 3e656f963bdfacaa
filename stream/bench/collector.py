"""The bench's consumer of the recommendations topic: when did each event's answer arrive?

It reads the recs topic from the beginning with its own consumer (no group) and stamps each record
with the wall-clock time ``getmany`` handed it over: the moment a downstream service could have used
the recommendation.  Event ids are ``<tag>:<i>`` (the publisher's), so each step registers its tag
and gets one slot per event; the first answer of an event counts, later ones are counted as repeats.

Parsing a ~1.5 kB recommendation with orjson costs ~10 µs; only the ``event_id`` is needed, so it is
cut out of the bytes directly (~1 µs) and orjson is the fallback.  The collector shares the cores
with everything else it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

__all__ = ["Collector", "StepReceipts", "event_id_of"]

_EVENT_ID = b'"event_id":"'


def event_id_of(value: bytes) -> bytes | None:
    """The ``event_id`` of a recommendation message, without parsing all of it."""
    k = value.find(_EVENT_ID)
    if k >= 0:
        start = k + len(_EVENT_ID)
        end = value.find(b'"', start)
        if end > start and value.find(b"\\", start, end) < 0:  # no escapes: the bytes are the id
            return value[start:end]
    try:
        eid = orjson.loads(value).get("event_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return eid.encode() if isinstance(eid, str) else None


@dataclass
class StepReceipts:
    """Receipt wall time (ms) of the answer to each event of one step; NaN until it arrives."""

    received_ms: np.ndarray
    answered: int = 0
    repeats: int = 0
    last_receipt_mono: float = field(default_factory=time.monotonic)


class Collector:
    """Follows the recs topic in the background of the bench's event loop."""

    def __init__(self, kafka: Any, recs_topic: str, on_record: Callable[[bytes, float], None] | None = None) -> None:
        self.kafka = kafka
        self.recs_topic = recs_topic
        self.steps: dict[bytes, StepReceipts] = {}
        self.unknown = 0  # answers to events of no registered step (e.g. a step already forgotten)
        self.on_record = on_record  # e.g. the demo prints a few recommendations
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from stream.kafka_settings import client_kwargs

        self._consumer = AIOKafkaConsumer(
            self.recs_topic, **client_kwargs(self.kafka), group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=50,
        )  # fmt: skip
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer is not None:
            await self._consumer.stop()

    def register(self, tag: str, count: int) -> StepReceipts:
        steps = self.steps[tag.encode()] = StepReceipts(np.full(count, np.nan))
        return steps

    def forget(self, tag: str) -> None:
        self.steps.pop(tag.encode(), None)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=20000)
            now_ms = time.time() * 1000
            now_mono = time.monotonic()
            for records in batches.values():
                for r in records:
                    self._record(r.value, now_ms, now_mono)

    def _record(self, value: bytes, now_ms: float, now_mono: float) -> None:
        eid = event_id_of(value)
        tag, _, index = (eid or b"").rpartition(b":")
        step = self.steps.get(tag)
        if step is None or not index.isdigit() or int(index) >= len(step.received_ms):
            self.unknown += 1
            return
        i = int(index)
        if step.received_ms[i] == step.received_ms[i]:  # not NaN: answered before
            step.repeats += 1
        else:
            step.received_ms[i] = now_ms
            step.answered += 1
            step.last_receipt_mono = now_mono
        if self.on_record is not None:
            self.on_record(value, now_ms)

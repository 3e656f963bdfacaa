"""Read recommendations as they arrive (``fusionrec tail``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer

from fusionrec.config import Config
from fusionrec.contracts import Recommendation, decode_recommendation
from stream.kafka_settings import client_kwargs


async def follow(
    cfg: Config, *, from_beginning: bool = False, idle_timeout_s: float | None = None
) -> AsyncIterator[tuple[Recommendation, float]]:
    """Yield (recommendation, receive time in ms); stop after ``idle_timeout_s`` without a message."""
    consumer = AIOKafkaConsumer(
        cfg.kafka.recs_topic,
        **client_kwargs(cfg.kafka),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        last = time.monotonic()
        while idle_timeout_s is None or time.monotonic() - last < idle_timeout_s:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            received_ms = time.time() * 1000
            for records in batches.values():
                for record in records:
                    last = time.monotonic()
                    yield decode_recommendation(record.value), received_ms
    finally:
        await consumer.stop()


def format_rec(rec: Recommendation, received_ms: float) -> str:
    latency = f"{received_ms - rec.event_produced_at_ms:7.1f} ms" if rec.event_produced_at_ms else "      ?"
    top = ", ".join(f"{i.item_id}({i.score:.2f})" for i in rec.items[:5])
    return f"{latency}  {rec.person_id:>14} [{rec.platform}] after {rec.event_id}: {top}"

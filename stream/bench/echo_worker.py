"""The harness's own ceiling: a stand-in worker that answers every event and does nothing else.

``fusionrec bench --only e2e --e2e-worker echo`` runs this instead of ``fusionrec worker``.  It speaks
the worker's interface to the bench (``FUSIONREC_*`` settings, ``GET /health`` with ``catalog_ready``
and ``items``, ``/metrics`` with ``fusionrec_recommendations_total``, one recommendation with no items
per event on the recs topic, keyed by person) with batched aiokafka I/O only: no model, no state, no
faust.  What the bench measures with it is what the publisher, the broker and the bench's consumer
allow on this machine, i.e. the highest sustained rate any real worker could show here, and the CPU
shares they take at that rate.  It is a measuring instrument, never a stand-in for the worker in tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

__all__ = ["main"]


async def _catalog(cfg: Any) -> tuple[int, dict[tuple[str, str], str]]:
    """Read the items and identity topics to their current end: (distinct items, identity links)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream.kafka_settings import client_kwargs

    consumer = AIOKafkaConsumer(**client_kwargs(cfg.kafka), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        topics = [cfg.kafka.items_topic, cfg.kafka.identity_topic]
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or await _parts(consumer, t))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        items: set[bytes] = set()
        links: dict[tuple[str, str], str] = {}
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=200, max_records=10000)).items():
                for r in records:
                    if tp.topic == cfg.kafka.items_topic:
                        items.add(r.key or b"")
                    else:
                        m = orjson.loads(r.value)
                        links[(m["platform"], m["user_id"])] = m["person_id"]
        return len(items), links
    finally:
        await consumer.stop()


async def _parts(consumer: Any, topic: str) -> set[int]:
    for _ in range(100):
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public equivalent
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


async def run() -> None:
    from aiohttp import web
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from fusionrec.config import load_config
    from stream.bench.publisher import kafka_partition
    from stream.kafka_settings import client_kwargs

    cfg = load_config()
    state: dict[str, Any] = {"ready": False, "items": 0, "recs": 0}

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"catalog_ready": state["ready"], "items": state["items"], "model_version": "echo"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=f"fusionrec_recommendations_total {state['recs']}\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, cfg.worker.web_host, cfg.worker.web_port).start()

    state["items"], links = await _catalog(cfg)
    producer = AIOKafkaProducer(**client_kwargs(cfg.kafka), acks=1, max_batch_size=1 << 20, max_request_size=8 << 20)
    consumer = AIOKafkaConsumer(
        *(cfg.kafka.events_topic(p) for p in cfg.platforms), **client_kwargs(cfg.kafka), group_id=cfg.worker.app_id,
        auto_offset_reset="earliest", enable_auto_commit=True, auto_commit_interval_ms=1000,
        session_timeout_ms=int(cfg.worker.session_timeout_s * 1000), max_partition_fetch_bytes=8 << 20,
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    state["ready"] = True
    recs_topic = cfg.kafka.recs_topic
    n_parts = len(await producer.partitions_for(recs_topic))
    part_of: dict[str, int] = {}
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=50, max_records=5000)
            now_ms = int(time.time() * 1000)
            out: dict[int, Any] = {}
            for records in batches.values():
                for r in records:
                    e = orjson.loads(r.value)
                    person = e.get("person_id") or links.get((e["platform"], e["user_id"])) or f"{e['platform']}:{e['user_id']}"
                    key = person.encode()
                    p = part_of.get(person)
                    if p is None:
                        p = part_of[person] = kafka_partition(key, n_parts)
                    rec = orjson.dumps({
                        "v": 1, "person_id": person, "platform": e["platform"], "event_id": e["event_id"],
                        "event_ts": e["ts"], "model_version": "echo", "items": [], "produced_at_ms": now_ms,
                        "event_produced_at_ms": r.timestamp,
                    })  # fmt: skip
                    b = out.get(p) or out.setdefault(p, producer.create_batch())
                    if b.append(timestamp=None, key=key, value=rec) is None:
                        b.close()
                        await producer.send_batch(b, recs_topic, partition=p)
                        b = out[p] = producer.create_batch()
                        b.append(timestamp=None, key=key, value=rec)
                    state["recs"] += 1
            for p, b in out.items():
                b.close()
                await producer.send_batch(b, recs_topic, partition=p)
    finally:
        await consumer.stop()
        await producer.stop()
        await runner.cleanup()


def main() -> int:
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

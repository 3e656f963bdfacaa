"""Open-loop publisher: events sent on a fixed schedule, whatever the worker does.

``python -m stream.bench.publisher --workload W.npz --tag T --start S --count N --rate R --out OUT.json``
(Kafka settings from the ``FUSIONREC_*`` environment, as every client).  Its own process, so that its
CPU never competes with the bench's consumer inside one event loop.

1. **Prepare.** Events ``S .. S+N-1`` of the workload (cycling) are encoded before the clock starts:
   JSON bytes, key (the platform user id) and partition, computed as Kafka's default partitioner does
   (murmur2 of the key), so that sending is only appending bytes to batches.  Each event gets a fresh
   id ``T:i`` and a timestamp near the wall clock (``ts`` grows with ``i``), so the worker never rejects
   it as a duplicate, far in the future or out of order.
2. **Announce.** One JSON line on stdout, ``{"ready": true, "start_wall_ms": ...}``: the bench samples
   CPU counters then, and event ``i`` is scheduled at ``start_wall_ms + i * 1000 / R``.
3. **Send.** Every tick, the events that are due go out with ``create_batch``/``send_batch``, one batch
   per partition (``send()`` per message costs ~36 µs of CPU here, which would make the publisher the
   bottleneck).  A late tick sends everything that is due: the schedule never slips, and lateness
   shows in the measured latency.  The Kafka timestamp of an event is its scheduled time.
4. **Report.** ``OUT.json``: what was actually done (start, count sent, achieved rate, lateness of the
   sends against the schedule, CPU seconds spent preparing and sending).

SIGTERM stops sending at the next tick (the bench does that when a step can no longer pass); the
report then says how many events went out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream.bench.workload import Workload

__all__ = ["Prepared", "prepare", "kafka_partition", "main"]

TICK_S = 0.010
"""Shortest time between two sends.  Every tick costs a produce request: measured here (2 cores, a
local broker), at 5,000 events/s the publisher used 59 µs of CPU per event with 1 ms ticks, 33 with
5 ms and 18 with 10 ms (broker CPU fell too).  An event waits at most one tick (about 6 ms at the
median), like a producer with ``linger.ms=10``, and that wait counts in the measured latency."""
FLAT_OUT_CHUNK = 2000  # events per tick when the rate is 0 (as fast as possible)
START_DELAY_S = 0.25  # between the announcement and the first scheduled send


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka alike) picks for ``key``."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class Prepared:
    """Encoded events in send order; ``tp[i]`` indexes ``targets`` (topic, partition)."""

    targets: list[tuple[str, int]]
    tp: list[int]
    keys: list[bytes]
    values: list[bytes]

    def __len__(self) -> int:
        return len(self.values)


def prepare(
    wl: Workload, *, tag: str, start: int, count: int, ts0: float, rate: float, topic_of: Any, partitions: dict[str, int]
) -> Prepared:
    """Encode ``count`` events of ``wl`` from ``start`` on (cycling); ``partitions``: topic → count."""
    at = wl.indices(start, count)
    plats, types = wl.platforms, wl.event_types
    users, items = wl.users, wl.items
    topics = [topic_of(p) for p in plats]
    targets: list[tuple[str, int]] = []
    target_ix: dict[tuple[str, int], int] = {}
    part_of: dict[tuple[int, int], int] = {}  # (platform, user row) -> target index; people come back
    tp: list[int] = []
    keys: list[bytes] = []
    values: list[bytes] = []
    spacing = 1.0 / rate if rate > 0 else 0.0001
    ev_p, ev_u, ev_i = wl.ev_platform[at].tolist(), wl.ev_user[at].tolist(), wl.ev_item[at].tolist()
    ev_t, ev_v = wl.ev_type[at].tolist(), wl.ev_value[at].tolist()
    for i in range(count):
        p, u = ev_p[i], ev_u[i]
        user = str(users[u])
        key = user.encode()
        t = part_of.get((p, u))
        if t is None:
            target = (topics[p], kafka_partition(key, partitions[topics[p]]))
            t = target_ix.get(target)
            if t is None:
                t = target_ix[target] = len(targets)
                targets.append(target)
            part_of[(p, u)] = t
        event: dict[str, Any] = {
            "v": 1,
            "event_id": f"{tag}:{i}",
            "ts": round(ts0 + i * spacing, 3),
            "platform": plats[p],
            "user_id": user,
            "item_id": str(items[ev_i[i]]),
            "event_type": types[ev_t[i]],
        }
        if ev_v[i] == ev_v[i]:  # not NaN: the event has a value
            event["value"] = ev_v[i]
        tp.append(t)
        keys.append(key)
        values.append(orjson.dumps(event))
    return Prepared(targets, tp, keys, values)


async def publish(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from fusionrec.config import load_config
    from stream.kafka_settings import client_kwargs

    cpu0 = time.process_time()
    cfg = load_config()
    wl = Workload.load(Path(args.workload))
    producer = AIOKafkaProducer(**client_kwargs(cfg.kafka), acks=1, max_batch_size=1 << 20, max_request_size=8 << 20)
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        topics = [cfg.kafka.events_topic(p) for p in wl.platforms]
        partitions = {t: len(await producer.partitions_for(t)) for t in topics}
        ev = prepare(
            wl, tag=args.tag, start=args.start, count=args.count, ts0=time.time(), rate=args.rate,
            topic_of=cfg.kafka.events_topic, partitions=partitions,
        )  # fmt: skip
        cpu_prepare = time.process_time() - cpu0
        start_wall = time.time() + START_DELAY_S
        start_mono = time.monotonic() + START_DELAY_S
        print(json.dumps({"ready": True, "start_wall_ms": start_wall * 1000, "count": len(ev)}), flush=True)
        await asyncio.sleep(max(0.0, start_mono - time.monotonic()))
        cpu1 = time.process_time()
        sent_at_ms, errors = await _send(producer, ev, args.rate, start_mono, start_wall, stop, args.tick_ms / 1000)
        sent = int(np.isfinite(sent_at_ms).sum())
        cpu_send = time.process_time() - cpu1
    finally:
        await producer.stop()
    spacing_ms = 1000.0 / args.rate if args.rate > 0 else 0.0
    scheduled = start_wall * 1000 + np.arange(sent) * spacing_ms
    late = sent_at_ms[:sent] - scheduled
    span_s = (float(sent_at_ms[sent - 1]) - start_wall * 1000) / 1000 if sent else 0.0
    return {
        "tag": args.tag,
        "asked_rate": args.rate,
        "planned": args.count,
        "published": sent,
        "stopped_early": sent < args.count,
        "start_wall_ms": start_wall * 1000,
        "last_send_wall_ms": float(sent_at_ms[sent - 1]) if sent else None,
        # n events on schedule span (n - 1) / rate seconds
        "achieved_rate": (sent - 1) / span_s if sent > 1 and span_s > 0 else None,
        "send_late_ms": {
            "p50": round(float(np.percentile(late, 50)), 2) if sent else None,
            "p99": round(float(np.percentile(late, 99)), 2) if sent else None,
            "max": round(float(late.max()), 2) if sent else None,
        },
        "delivery_errors": errors,
        "cpu_prepare_s": round(cpu_prepare, 3),
        "cpu_send_s": round(cpu_send, 3),
        "send_wall_s": round(span_s, 3),
        "tick_ms": args.tick_ms,
    }


async def _send(
    producer: Any, ev: Prepared, rate: float, start_mono: float, start_wall: float, stop: asyncio.Event, tick_s: float
) -> tuple[np.ndarray, int]:
    """Send on schedule; returns each event's send wall time in ms (NaN: not sent) and the error count."""
    n = len(ev)
    sent_at = np.full(n, np.nan)
    futures: list[asyncio.Future[Any]] = []
    i = 0
    wall_minus_mono = start_wall - start_mono
    while i < n and not stop.is_set():
        now = time.monotonic()
        due = min(n, i + FLAT_OUT_CHUNK) if rate <= 0 else min(n, int((now - start_mono) * rate) + 1)
        if due > i:
            builders: dict[int, Any] = {}
            for j in range(i, due):
                t = ev.tp[j]
                b = builders.get(t)
                if b is None:
                    b = builders[t] = producer.create_batch()
                ts = None if rate <= 0 else int((start_wall + j / rate) * 1000)
                if b.append(timestamp=ts, key=ev.keys[j], value=ev.values[j]) is None:  # batch full
                    futures.append(await _ship(producer, b, ev.targets[t]))
                    b = builders[t] = producer.create_batch()
                    b.append(timestamp=ts, key=ev.keys[j], value=ev.values[j])
            for t, b in builders.items():
                futures.append(await _ship(producer, b, ev.targets[t]))
            sent_at[i:due] = (time.monotonic() + wall_minus_mono) * 1000
            i = due
            if len(futures) > 4096:  # keep the list short; failures are counted at the end
                futures = [f for f in futures if not f.done() or f.exception() is not None]
        if rate <= 0:
            await asyncio.sleep(0)
        elif i < n:
            await asyncio.sleep(max(start_mono + i / rate, now + tick_s) - time.monotonic())
    results = await asyncio.gather(*futures, return_exceptions=True)
    return sent_at, sum(1 for r in results if isinstance(r, BaseException))


async def _ship(producer: Any, batch: Any, target: tuple[str, int]) -> asyncio.Future[Any]:
    batch.close()
    fut: asyncio.Future[Any] = await producer.send_batch(batch, target[0], partition=target[1])
    return fut


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.bench.publisher", description=__doc__.split("\n", 1)[0])
    p.add_argument("--workload", required=True, help="workload.npz (stream.bench.workload)")
    p.add_argument("--tag", required=True, help="event ids are TAG:i; unique per step")
    p.add_argument("--start", type=int, default=0, help="first workload event (the workload cycles)")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0, help="events/s on schedule; 0 = as fast as possible")
    p.add_argument("--out", required=True, help="where the report (JSON) goes")
    p.add_argument("--tick-ms", type=float, default=TICK_S * 1000, help="shortest time between two sends")
    args = p.parse_args(argv)
    if not (args.rate >= 0 and math.isfinite(args.rate)):
        p.error("--rate must be a finite number ≥ 0")
    report = asyncio.run(publish(args))
    Path(args.out).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

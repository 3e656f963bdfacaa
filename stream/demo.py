"""``make demo``: local broker, one worker, a dataset replayed through Kafka, recommendations tailed.

Everything runs for real: the Apache Kafka broker started by ``stream.kafka_local``, the worker as its
own process (``fusionrec worker``), the replay producer and a tailing consumer.  Latency is measured
from the event's produce timestamp to the moment the tail receives its recommendation.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

from fusionrec.config import load_config
from fusionrec.dataset import dataset_platforms
from stream.kafka_local.broker import LocalCluster, free_port
from stream.replay import replay
from stream.tail import follow, format_rec
from stream.topics import ensure_topics


def _health(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return dict(orjson.loads(resp.read()))
    except OSError:
        return {}


def _wait_catalog(worker: subprocess.Popen[bytes], port: int, items: int, timeout_s: float = 900) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with code {worker.returncode}; see its log above")
        health = _health(port)
        if health.get("catalog_ready") and health.get("items") == items:
            return time.monotonic() - start
        time.sleep(1)
    raise SystemExit(f"the worker did not load {items} items within {timeout_s}s")


def run_demo(dataset: str, *, rate: float, limit: int | None, show: int, keep_broker: bool) -> int:
    folder = Path(dataset)
    run_id = f"demo{int(time.time())}"
    cluster = LocalCluster()
    print(f"[demo] starting Apache Kafka 3.9.2 (KRaft) under {cluster.data_dir} ...", flush=True)
    bootstrap = cluster.start()
    port = free_port()
    env = {
        **os.environ,
        "FUSIONREC_KAFKA_BOOTSTRAP": bootstrap,
        "FUSIONREC_PLATFORMS": ",".join(dataset_platforms(folder)),
        "FUSIONREC_TOPIC_PREFIX": f"{run_id}.",
        "FUSIONREC_APP_ID": run_id,
        "FUSIONREC_WEB_PORT": str(port),
        "FUSIONREC_DATA_DIR": str(Path("~/.cache/fusionrec/demo").expanduser() / run_id),
        "HF_HUB_OFFLINE": "1",
    }
    os.environ.update(env)
    cfg = load_config()
    asyncio.run(ensure_topics(cfg))
    print(f"[demo] broker ready at {bootstrap}; publishing the catalog of {folder} ...", flush=True)
    items = asyncio.run(replay(cfg, folder, limit=0)).items
    worker = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env)
    try:
        print(f"[demo] worker started (pid {worker.pid}); encoding {items} items ...", flush=True)
        took = _wait_catalog(worker, port, items)
        print(f"[demo] catalog encoded and indexed in {took:.1f}s; replaying events at {rate:.0f}/s", flush=True)
        return asyncio.run(_replay_and_tail(cfg, folder, rate=rate, limit=limit, show=show))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        if not keep_broker:
            cluster.stop()


async def _replay_and_tail(cfg, folder: Path, *, rate: float, limit: int | None, show: int) -> int:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    received: list[float] = []
    people: set[str] = set()
    replay_done = asyncio.Event()
    stats_box: list[object] = []

    async def produce() -> None:
        stats_box.append(await replay(cfg, folder, rate=rate, limit=limit, skip_items=True))
        replay_done.set()

    producer = asyncio.create_task(produce())
    shown = 0
    async for rec, received_ms in follow(cfg, from_beginning=True, idle_timeout_s=30):
        if rec.event_produced_at_ms:
            latencies.append(received_ms - rec.event_produced_at_ms)
        received.append(received_ms)
        if shown < show and (rec.person_id in people or len(people) < 3):
            people.add(rec.person_id)
            print("  " + format_rec(rec, received_ms), flush=True)
            shown += 1
        if replay_done.is_set() and len(received) >= stats_box[0].events:  # type: ignore[attr-defined]
            break
    await producer
    stats = stats_box[0]
    lat = np.array(latencies)
    span_s = (max(received) - min(received)) / 1000 if len(received) > 1 else float("nan")
    print()
    print(f"[demo] events published : {stats.events} at {stats.events_per_s:.0f}/s offered")  # type: ignore[attr-defined]
    print(f"[demo] recommendations  : {len(received)} received")
    print(f"[demo] throughput       : {len(received) / span_s:.0f} events/s through the worker")
    print(
        f"[demo] event -> recommendation latency: median {np.median(lat):.1f} ms, "
        f"p95 {np.percentile(lat, 95):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, max {lat.max():.1f} ms"
    )
    return 0 if len(received) >= stats.events else 1  # type: ignore[attr-defined]

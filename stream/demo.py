"""``make demo``: local broker, one worker, a dataset offered open loop through Kafka, latency measured.

Everything runs for real: the Apache Kafka broker started by ``stream.kafka_local``, the worker as its
own process (``fusionrec worker``), the bench's open-loop publisher (its own process: events sent on a
fixed schedule, ``stream/bench/publisher.py``) and a consumer of the recommendations.  Latency is what
a downstream service sees: the moment the consumer *receives* a recommendation minus the moment its
event was *scheduled* to be sent; an event never answered counts as infinitely late.  A short warm-up
(not measured) lets the worker load its model and train its online learner first.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from fusionrec.config import Config, load_config
from fusionrec.contracts import decode_recommendation
from stream.bench.catalog import publish_catalog
from stream.bench.collector import Collector
from stream.bench.step import StepOutcome, StepRunner
from stream.bench.workload import load_workload
from stream.kafka_local.broker import LocalCluster, free_port
from stream.tail import format_rec

WARMUP_EVENTS = 2000


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
    wl = load_workload(folder)
    env = {
        **os.environ,
        "FUSIONREC_KAFKA_BOOTSTRAP": bootstrap,
        "FUSIONREC_PLATFORMS": ",".join(wl.platforms),
        "FUSIONREC_TOPIC_PREFIX": f"{run_id}.",
        "FUSIONREC_APP_ID": run_id,
        "FUSIONREC_WEB_PORT": str(port),
        "FUSIONREC_DATA_DIR": str(Path("~/.cache/fusionrec/demo").expanduser() / run_id),
        "HF_HUB_OFFLINE": "1",
    }
    os.environ.update(env)
    cfg = load_config()
    print(f"[demo] broker ready at {bootstrap}; publishing the catalog of {folder} ...", flush=True)
    items, links = asyncio.run(publish_catalog(cfg, folder, wl))
    worker = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env)
    try:
        print(f"[demo] worker started (pid {worker.pid}); encoding {items:,} items ...", flush=True)
        took = _wait_catalog(worker, port, items)
        print(f"[demo] catalog encoded and indexed in {took:.1f}s", flush=True)
        count = limit if limit else len(wl) - WARMUP_EVENTS
        with tempfile.TemporaryDirectory(prefix="fusionrec-demo-") as tmp:
            wl_path = Path(tmp) / "workload.npz"
            wl.save(wl_path)
            groups = {"worker": [worker.pid], "broker": [pid for n in cluster.nodes if (pid := n.pid()) is not None]}
            outcome = asyncio.run(_offer(cfg, env, wl_path, Path(tmp), groups, rate=rate, count=count, show=show))
        _report(outcome, folder, items, links)
        return 0 if outcome.latency.answered >= outcome.latency.published else 1
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        if not keep_broker:
            cluster.stop()


async def _offer(
    cfg: Config, env: dict[str, str], wl_path: Path, tmp: Path, groups: dict[str, list[int]], *, rate: float, count: int, show: int
) -> StepOutcome:
    shown: list[str] = []

    def print_some(value: bytes, received_ms: float) -> None:
        if len(shown) < show:
            rec = decode_recommendation(value)
            shown.append(rec.event_id)
            print("  " + format_rec(rec, received_ms), flush=True)  # latency from the scheduled send

    collector = Collector(cfg.kafka, cfg.kafka.recs_topic)
    await collector.start()
    runner = StepRunner(env, wl_path, collector, lambda: groups, tmp, log=lambda line: print(line, flush=True))
    try:
        print(f"[demo] warm-up: {WARMUP_EVENTS:,} events (not measured) ...", flush=True)
        await runner.run("warm", 0.0, WARMUP_EVENTS, 0, abort=False, drain_idle_s=60.0, drain_max_s=900.0)
        print(f"[demo] offering {count:,} events at {rate:,.0f}/s, open loop; a few recommendations as they arrive:", flush=True)
        return await runner.run(
            "demo", rate, count, WARMUP_EVENTS, abort=False, drain_idle_s=30.0, drain_max_s=900.0,
            on_started=lambda: setattr(collector, "on_record", print_some),
        )  # fmt: skip
    finally:
        await collector.stop()


def _report(o: StepOutcome, folder: Path, items: int, links: int) -> None:
    lat = o.latency
    ms = lambda v: "never (unanswered events)" if not math.isfinite(v) else f"{v:,.0f} ms"  # noqa: E731
    worker_us = o.cpu_us_per_event("worker")
    share = o.cpu_share
    print()
    print(f"[demo] dataset          : {folder} ({items:,} items{f', {links:,} identity links' if links else ''})")
    print(f"[demo] offered          : {lat.published:,} events at {o.asked_rate:,.0f}/s ({o.achieved_rate or 0:,.0f}/s achieved), 1 worker")
    print(f"[demo] answered         : {lat.answered:,} ({100 * lat.answered_fraction:.2f} %)")
    print(f"[demo] throughput       : {o.answered_per_s or 0:,.0f} events/s answered (first scheduled send to last answer)")
    print(
        f"[demo] latency, receipt - scheduled send: p50 {ms(lat.p50_ms)}, p95 {ms(lat.p95_ms)}, "
        f"p99 {ms(lat.p99_ms)}, max {ms(lat.max_ms)}"
    )
    print(
        f"[demo] CPU              : worker {worker_us or 0:,.0f} µs/event; share of the machine: worker "
        f"{share.get('worker', 0):.0%}, broker {share.get('broker', 0):.0%}, publisher {share.get('publisher', 0):.0%}, "
        f"this process {share.get('collector', 0):.0%}, other {share.get('other', 0):.0%}"
    )

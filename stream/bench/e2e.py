"""End to end through the real broker: saturation events/s and event→recommendation latency.

A throw-away Apache Kafka broker (``LocalCluster`` under a temp dir, free port), a fresh topic prefix
per run, the catalog published, then 1 (and 2) ``fusionrec worker`` processes.  A publisher runs in
its own process (``python -m stream.bench.e2e publish``) so it never competes with the measuring
consumer in one event loop.  Phases, each bounded in time:

* warm-up: a few thousand events, drained;
* fixed offered loads (1k and 5k events/s): the publisher paces itself and reports what it really
  offered; latency = the recommendation's ``produced_at_ms`` (the worker's clock when it published)
  minus ``event_produced_at_ms`` (the event's Kafka timestamp, set when the publisher sent it);
* saturation: N events as fast as the publisher goes; recommendations/s over the steady middle
  (10%..90% of the recommendations by publish time).

Events are the dataset's, cycled, with fresh event ids per phase and timestamps that only grow (so
nothing is rejected as duplicate or out of order; the dataset's real timing is not kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

WARMUP_EVENTS = 3000
SATURATION_EVENTS = 20000
DRAIN_IDLE_S = 20.0  # a worker's micro-batch can take seconds on a loaded 2-core machine
DRAIN_MAX_S = 90.0  # per phase; a phase that has not drained by then is reported complete=false
STEADY_MIN_RECS = 1000  # fewer recommendations than this span too few batches for a steady rate
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ------------------------------------------------------------------------------------- publisher


def publisher_main(argv: list[str]) -> int:
    """``python -m stream.bench.e2e publish``: pre-encode events, then send them at ``--rate``."""
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    stats = asyncio.run(publish(a.dataset, a.tag, a.start, a.count, a.rate, a.t0))
    Path(a.out).write_text(json.dumps(stats))
    return 0


def encoded_events(dataset: str, tag: str, start: int, count: int, t0: float, topic_of: Any) -> list[tuple[str, bytes, bytes]]:
    from fusionrec.contracts import BehaviorEvent, encode
    from fusionrec.dataset import read_events

    base = [r.event for r in read_events(dataset)]
    out = []
    for i in range(start, start + count):
        e = base[i % len(base)]
        ev = BehaviorEvent(
            event_id=f"{tag}:{i}", ts=t0 + i * 0.001, platform=e.platform, user_id=e.user_id,
            item_id=e.item_id, event_type=e.event_type, value=e.value,
        )  # fmt: skip
        out.append((topic_of(e.platform), e.user_id.encode(), encode(ev)))
    return out


async def publish(dataset: str, tag: str, start: int, count: int, rate: float, t0: float) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from fusionrec.config import load_config
    from stream.kafka_settings import client_kwargs

    cfg = load_config()
    messages = encoded_events(dataset, tag, start, count, t0, cfg.kafka.events_topic)
    producer = AIOKafkaProducer(**client_kwargs(cfg.kafka), acks=1, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        begin = time.monotonic()
        begin_ms = time.time() * 1000
        sent = 0
        while sent < count:
            due = count if rate <= 0 else min(count, int((time.monotonic() - begin) * rate) + 1)
            while sent < due:
                topic, key, value = messages[sent]
                await producer.send(topic, value, key=key)
                sent += 1
            if sent < count:
                await asyncio.sleep(max(0.0, begin + sent / rate - time.monotonic()) or 0.0005)
        last_send = time.monotonic()
        await producer.flush()
        flushed = time.monotonic()
    finally:
        await producer.stop()
    seconds = max(last_send - begin, 1e-9)
    return {
        "published": count,
        "send_seconds": round(seconds, 3),
        "flush_seconds": round(flushed - last_send, 3),
        "offered_per_s": count / seconds,
        "start_ms": begin_ms,
        "asked_rate": rate,
    }


# -------------------------------------------------------------------------------------- workers


def _get(port: int, path: str, timeout_s: float = 2.0) -> bytes:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as resp:
            return bytes(resp.read())
    except OSError:
        return b""


def wait_ready(workers: list[tuple[subprocess.Popen[bytes], int]], items: int, timeout_s: float = 600) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        ready = 0
        for proc, port in workers:
            if proc.poll() is not None:
                raise RuntimeError(f"worker pid {proc.pid} exited with code {proc.returncode}")
            health = orjson.loads(_get(port, "/health") or b"{}")
            ready += bool(health.get("catalog_ready") and health.get("items") == items)
        if ready == len(workers):
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"workers not ready with {items} items after {timeout_s}s")


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def metric_value(text: str, name: str) -> float | None:
    """Sum of the samples of counter ``name`` (every label set); None when the page is empty."""
    if not text:
        return None  # the worker did not answer in time (its event loop was busy with a batch)
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and not line.startswith("#"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def recs_counters(workers: list[tuple[subprocess.Popen[bytes], int]]) -> list[float | None]:
    """Each worker's ``fusionrec_recommendations_total`` (None: /metrics did not answer in 10 s)."""
    return [metric_value(_get(port, "/metrics", 10.0).decode(), "fusionrec_recommendations_total") for _, port in workers]


# ---------------------------------------------------------------------------------- measurement


class Collector:
    """Reads the recs topic from the beginning; keeps per-phase timings of every recommendation."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.rows: dict[str, list[tuple[float, float, float]]] = {}  # tag -> (produced, event_produced, received)
        self.last_new = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from stream.kafka_settings import client_kwargs

        self.consumer = AIOKafkaConsumer(
            self.cfg.kafka.recs_topic, **client_kwargs(self.cfg.kafka), group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, max_partition_fetch_bytes=4 << 20,
        )  # fmt: skip
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now_ms = time.time() * 1000
            for records in batches.values():
                for r in records:
                    m = orjson.loads(r.value)
                    tag = m["event_id"].split(":", 1)[0]
                    self.rows.setdefault(tag, []).append((m["produced_at_ms"], m.get("event_produced_at_ms") or np.nan, now_ms))
                    self.last_new = time.monotonic()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()

    def count(self, tag: str) -> int:
        return len(self.rows.get(tag, ()))

    async def drain(self, tag: str, expected: int, *, idle_s: float = DRAIN_IDLE_S, max_s: float = DRAIN_MAX_S) -> float:
        start = time.monotonic()
        while self.count(tag) < expected and time.monotonic() - start < max_s:
            if time.monotonic() - max(self.last_new, start) > idle_s:
                break
            await asyncio.sleep(0.2)
        return time.monotonic() - start


def phase_figures(rows: list[tuple[float, float, float]], published: int) -> dict[str, Any]:
    if not rows:
        return {"received": 0, "published": published, "complete": False}
    a = np.array(rows, dtype=np.float64)
    produced, event_ms, received = a[:, 0], a[:, 1], a[:, 2]
    order = np.sort(produced)
    lo, hi = int(0.1 * len(order)), max(int(0.9 * len(order)) - 1, 0)
    enough = len(rows) >= min(published, STEADY_MIN_RECS) and len(rows) >= 0.9 * published
    steady = (hi - lo) / ((order[hi] - order[lo]) / 1000) if enough and hi > lo and order[hi] > order[lo] else float("nan")
    lat = produced - event_ms
    lat = lat[np.isfinite(lat)]
    deliver = received - event_ms
    deliver = deliver[np.isfinite(deliver)]
    pct = lambda x, q: float(np.percentile(x, q)) if len(x) else float("nan")  # noqa: E731
    return {
        "published": published,
        "received": len(rows),
        "complete": len(rows) >= published,
        "recs_per_s_steady": steady,
        "recs_per_s_overall": len(rows) / max((order[-1] - np.nanmin(event_ms)) / 1000, 1e-9),
        "received_fraction": round(len(rows) / published, 4) if published else 1.0,
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": pct(lat, 99),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "delivered_p50_ms": pct(deliver, 50),
        "delivered_p99_ms": pct(deliver, 99),
    }


# ------------------------------------------------------------------------------------- one run


async def run_phases(cfg: Any, env: dict[str, str], options: Any, workers: list[tuple[subprocess.Popen[bytes], int]], tmp: Path, run_tag: str) -> dict[str, Any]:
    collector = Collector(cfg)
    await collector.start()
    t0 = time.time() - 30 * 86400
    cursor = 0
    results: dict[str, Any] = {}
    quick = options.quick

    async def phase(name: str, count: int, rate: float, *, profile: bool = False) -> dict[str, Any]:
        nonlocal cursor
        tag = f"{run_tag}{name}"
        out = tmp / f"pub-{tag}.json"
        cmd = [sys.executable, "-m", "stream.bench.e2e", "publish", "--dataset", options.dataset, "--tag", tag,
               "--start", str(cursor), "--count", str(count), "--rate", str(rate), "--t0", str(t0), "--out", str(out)]  # fmt: skip
        cursor += count
        metrics_before = recs_counters(workers)
        pub = await asyncio.create_subprocess_exec(*cmd, env=env)
        spy = None
        if profile and options.profile_dir:
            Path(options.profile_dir).mkdir(parents=True, exist_ok=True)
            raw_path = Path(options.profile_dir) / f"worker-{tag}.raw.txt"
            spy = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(workers[0][0].pid), "-d", "15",
                 "-r", "50", "--nonblocking", "-f", "raw", "-o", str(raw_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        await pub.wait()
        stats = json.loads(out.read_text())
        drained = await collector.drain(tag, count)
        fig = phase_figures(collector.rows.get(tag, []), count)
        fig.update(offered_per_s=stats["offered_per_s"], asked_per_s=rate or None, send_seconds=stats["send_seconds"], drain_wait_s=round(drained, 1))
        metrics_after = recs_counters(workers)
        fig["recommendations_per_worker"] = [None if a is None or b is None else round(b - a) for a, b in zip(metrics_before, metrics_after)]
        if spy is not None:
            spy.wait(timeout=60)
            fig["profile"] = aggregate_profile(raw_path)
        return fig

    try:
        results["warmup"] = await phase("warm", 500 if quick else WARMUP_EVENTS, 0.0)
        loads = options.e2e_loads
        phase_s = 5.0 if quick else options.e2e_phase_s
        if loads:
            results[f"load_{int(loads[0])}"] = await phase(f"l{int(loads[0])}", int(loads[0] * phase_s), loads[0])
        results["saturation"] = await phase("sat", 3000 if quick else SATURATION_EVENTS, 0.0, profile=len(workers) == 1)
        for load in loads[1:]:
            results[f"load_{int(load)}"] = await phase(f"l{int(load)}", int(load * phase_s), load)
    finally:
        await collector.stop()
    return results


def run_env(options: Any, bootstrap: str, run_id: str) -> dict[str, str]:
    """Environment of one run's clients and workers: own topic prefix and group, the bench's broker."""
    from fusionrec.dataset import dataset_platforms

    return {
        **os.environ,
        "FUSIONREC_KAFKA_BOOTSTRAP": bootstrap,
        "FUSIONREC_PLATFORMS": ",".join(dataset_platforms(options.dataset)),
        "FUSIONREC_TOPIC_PREFIX": f"{run_id}.",
        "FUSIONREC_APP_ID": run_id,
        "FUSIONREC_PARTITIONS": "4",
        "FUSIONREC_DEVICE": "cpu" if options.device == "cpu" else os.environ.get("FUSIONREC_DEVICE", "auto"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def start_workers(env: dict[str, str], n: int, run_dir: Path) -> list[tuple[subprocess.Popen[bytes], int]]:
    """``n`` ``fusionrec worker`` processes, each with its own web port, data dir and log file."""
    from stream.kafka_local.broker import free_port

    run_dir.mkdir(parents=True, exist_ok=True)
    workers: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for w in range(n):
            port = free_port()
            wenv = {**env, "FUSIONREC_WEB_PORT": str(port), "FUSIONREC_DATA_DIR": str(run_dir / f"worker{w}")}
            with open(run_dir / f"worker{w}.log", "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=wenv, stdout=log, stderr=subprocess.STDOUT)
            workers.append((proc, port))
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[tuple[subprocess.Popen[bytes], int]]) -> None:
    """SIGTERM every worker, wait up to 60 s each, then SIGKILL what is left."""
    for proc, _ in workers:
        if proc.poll() is None:
            proc.terminate()
    for proc, _ in workers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def one_run(options: Any, bootstrap: str, n_workers: int, n_items: int, tmp: Path) -> dict[str, Any]:
    """Fresh topics and catalog, ``n_workers`` workers, the phases; the workers are always stopped."""
    from fusionrec.config import load_config
    from stream.replay import replay

    run_id = f"bench{int(time.time())}w{n_workers}"
    env = run_env(options, bootstrap, run_id)
    cfg = load_config(env=env)
    asyncio.run(replay(cfg, options.dataset, limit=0))  # topics + the catalog
    workers = start_workers(env, n_workers, tmp / run_id)
    try:
        ready_s = wait_ready(workers, n_items)
        phases = asyncio.run(run_phases(cfg, env, options, workers, tmp, f"{run_id}-"))
        phases["catalog_ready_s"] = round(ready_s, 1)
        phases["worker_peak_rss_mb"] = [vm_hwm_mb(p.pid) for p, _ in workers]
        phases["worker_env"] = {k: env[k] for k in BLAS_ENV if k in env}
        return phases
    except BaseException:
        for w in range(n_workers):
            print(f"[bench] worker{w} log tail:\n{log_tail(tmp / run_id / f'worker{w}.log')}", file=sys.stderr)
        raise
    finally:
        stop_workers(workers)


def _sigterm_to_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks stop the workers and the broker


def start_broker(tmp: Path, attempts: int = 3) -> tuple[Any, str]:
    """A throw-away one-node cluster under ``tmp`` on a free port; (cluster, bootstrap).

    A failed start is destroyed and retried with a fresh data dir: the local broker's random cluster id
    occasionally begins with ``-``, which ``kafka-storage format -t`` then reads as an option.
    """
    from stream.kafka_local.broker import LocalCluster, free_port

    for attempt in range(1, attempts + 1):
        cluster = LocalCluster(tmp / f"kafka{attempt}", port=free_port())
        try:
            return cluster, cluster.start()
        except BaseException as exc:
            cluster.destroy()
            if attempt == attempts or not isinstance(exc, Exception):
                raise
            print(f"[bench] broker start failed (attempt {attempt}), retrying with a fresh data dir", file=sys.stderr)
    raise AssertionError("unreachable")


def bench_e2e(options: Any) -> dict[str, Any]:
    from fusionrec.dataset import read_items

    tmp = Path(tempfile.mkdtemp(prefix="fusionrec-bench-"))
    cluster: Any = None
    n_items = sum(1 for _ in read_items(options.dataset))
    out: dict[str, Any] = {"runs": {}}
    previous = signal.signal(signal.SIGTERM, _sigterm_to_exit)
    try:
        cluster, bootstrap = start_broker(tmp)
        out["broker"] = f"Apache Kafka (LocalCluster, 1 node, own data dir and free port) at {bootstrap}"
        for n_workers in options.e2e_workers:
            out["runs"][f"workers_{n_workers}"] = one_run(options, bootstrap, n_workers, n_items, tmp)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    first = out["runs"].get(f"workers_{options.e2e_workers[0]}", {})
    target = first.get(f"load_{int(options.e2e_loads[-1])}", {}) if options.e2e_loads else {}
    out.update(
        events_per_s=first.get("saturation", {}).get("recs_per_s_steady", float("nan")),
        offered_per_s=target.get("offered_per_s", float("nan")),
        p50_ms=target.get("p50_ms", float("nan")),
        p95_ms=target.get("p95_ms", float("nan")),
        p99_ms=target.get("p99_ms", float("nan")),
        complete_at_offered=target.get("complete"),
        workers=options.e2e_workers[0],
        events_per_s_by_workers={
            name: run.get("saturation", {}).get("recs_per_s_steady", float("nan")) for name, run in out["runs"].items()
        },
        latency="recommendation produced_at_ms - event Kafka timestamp (both wall clock, one machine); "
        "percentiles over the recommendations received; complete=false means the worker fell behind and "
        "the slowest events never arrived within the phase, so the percentiles are lower bounds",
    )
    return out


# ---------------------------------------------------------------------------------------- profile


def aggregate_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy ``-f raw`` (collapsed stacks) → share of samples per function, self and inclusive."""
    if not path.exists():
        return {"error": f"py-spy wrote no profile to {path}"}
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    share = lambda c: [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]  # noqa: E731
    return {"samples": total, "file": str(path), "self_pct": share(self_c), "inclusive_pct": share(incl)}


def _frame(frame: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "publish":
        sys.exit(publisher_main(sys.argv[2:]))
    print("usage: python -m stream.bench.e2e publish ...", file=sys.stderr)
    sys.exit(2)

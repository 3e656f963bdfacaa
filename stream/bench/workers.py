"""The processes the end-to-end bench runs and measures: a throw-away broker and ``fusionrec worker``s.

The worker is a black box here: a process started as ``python -m stream.cli worker``, configured by
``FUSIONREC_*`` variables, that answers ``GET /health`` (``catalog_ready``, ``items``) and ``/metrics``
(Prometheus text) on ``FUSIONREC_WEB_PORT``.  Nothing else of it is assumed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "Worker",
    "run_env",
    "start_workers",
    "stop_workers",
    "wait_ready",
    "metric_value",
    "recs_counters",
    "worker_counters",
    "vm_hwm_mb",
    "log_tail",
    "start_broker",
    "BLAS_ENV",
    "WORKER_COMMANDS",
]

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
Worker = tuple[subprocess.Popen[bytes], int]  # (process, web port)


def http_get(port: int, path: str, timeout_s: float = 2.0) -> bytes:
    """The body of ``GET http://127.0.0.1:<port><path>``; empty when there is no answer in time."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as resp:
            return bytes(resp.read())
    except OSError:
        return b""


def run_env(bootstrap: str, run_id: str, platforms: list[str], device: str, partitions: int = 4) -> dict[str, str]:
    """Environment of one run's clients and workers: own topic prefix and group, the bench's broker."""
    return {
        **os.environ,
        "FUSIONREC_KAFKA_BOOTSTRAP": bootstrap,
        "FUSIONREC_PLATFORMS": ",".join(platforms),
        "FUSIONREC_TOPIC_PREFIX": f"{run_id}.",
        "FUSIONREC_APP_ID": run_id,
        "FUSIONREC_PARTITIONS": str(partitions),
        "FUSIONREC_DEVICE": "cpu" if device == "cpu" else os.environ.get("FUSIONREC_DEVICE", "auto"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


WORKER_COMMANDS = {
    "fusionrec": ["-m", "stream.cli", "worker"],  # the product
    "echo": ["-m", "stream.bench.echo_worker"],  # the harness's own ceiling (answers, does nothing else)
}


def start_workers(env: dict[str, str], n: int, run_dir: Path, kind: str = "fusionrec") -> list[Worker]:
    """``n`` worker processes (``fusionrec worker``, or the echo stand-in), each with its own web port,
    data dir and log file."""
    from stream.kafka_local.broker import free_port

    run_dir.mkdir(parents=True, exist_ok=True)
    workers: list[Worker] = []
    try:
        for w in range(n):
            port = free_port()
            wenv = {**env, "FUSIONREC_WEB_PORT": str(port), "FUSIONREC_DATA_DIR": str(run_dir / f"worker{w}")}
            with open(run_dir / f"worker{w}.log", "wb") as log:
                proc = subprocess.Popen([sys.executable, *WORKER_COMMANDS[kind]], env=wenv, stdout=log, stderr=subprocess.STDOUT)
            workers.append((proc, port))
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[Worker]) -> None:
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


def wait_ready(workers: list[Worker], items: int, timeout_s: float = 1800) -> float:
    """Seconds until every worker reports its catalog ready with ``items`` items.

    The first start on a new catalog encodes every item on the CPU (100k items: minutes); the vector
    cache makes later starts fast.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        ready = 0
        for proc, port in workers:
            if proc.poll() is not None:
                raise RuntimeError(f"worker pid {proc.pid} exited with code {proc.returncode}")
            health = orjson.loads(http_get(port, "/health") or b"{}")
            ready += bool(health.get("catalog_ready") and health.get("items") == items)
        if ready == len(workers):
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"workers not ready with {items} items after {timeout_s}s")


def metric_value(text: str, name: str) -> float | None:
    """Sum of the samples of counter ``name`` (every label set); None when the page is empty."""
    if not text:
        return None  # the worker did not answer in time (its event loop was busy with a batch)
    total = 0.0
    labelled = "{" in name  # an exact series, labels included
    for line in text.splitlines():
        if labelled:
            if line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
            continue
        if (line.startswith(name + "{") or line.startswith(name + " ")) and not line.startswith("#"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def recs_counters(workers: list[Worker]) -> list[float | None]:
    """Each worker's ``fusionrec_recommendations_total`` (None: /metrics did not answer in 10 s)."""
    return [c["recommendations"] if c is not None else None for c in worker_counters(workers)]


COUNTERS = {
    "recommendations": "fusionrec_recommendations_total",
    "loop_wait_s": 'fusionrec_worker_loop_seconds_total{phase="wait"}',
    "loop_process_s": 'fusionrec_worker_loop_seconds_total{phase="process"}',
    "batch_events": 'fusionrec_batch_size_events_sum{stage="recommend"}',
    "batches": 'fusionrec_batch_size_events_count{stage="recommend"}',
}


def worker_counters(workers: list[Worker]) -> list[dict[str, float | None] | None]:
    """Each worker's counters of :data:`COUNTERS` (None: /metrics did not answer in 10 s)."""
    out: list[dict[str, float | None] | None] = []
    for _, port in workers:
        text = http_get(port, "/metrics", 10.0).decode()
        out.append({key: metric_value(text, name) for key, name in COUNTERS.items()} if text else None)
    return out


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident memory of a process (MB)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_broker(tmp: Path, attempts: int = 3) -> tuple[Any, str]:
    """A throw-away one-node cluster under ``tmp`` on a free port; (cluster, bootstrap).

    Never 9092 and never ``~/.cache/fusionrec/kafka-data``: the bench must not touch a broker someone
    else is using.  A failed start (a JVM starved on a busy machine) is retried with a fresh data dir.
    """
    import logging

    from stream.kafka_local.broker import LocalCluster, free_port

    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "Unable connect" twice a second until the JVM listens: expected
    for attempt in range(1, attempts + 1):
        cluster = LocalCluster(tmp / f"kafka{attempt}", port=free_port())
        try:
            started = cluster, cluster.start()
            quiet.setLevel(level)
            return started
        except BaseException as exc:
            cluster.destroy()
            if attempt == attempts or not isinstance(exc, Exception):
                quiet.setLevel(level)
                raise
            print(f"[bench] broker start failed (attempt {attempt}), retrying with a fresh data dir", file=sys.stderr)
    raise AssertionError("unreachable")

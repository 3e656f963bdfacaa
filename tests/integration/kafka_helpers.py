"""Helpers for integration tests: a real broker per session, workers as real processes, raw clients."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata

from fusionrec.config import Config, load_config
from stream.kafka_local.broker import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    """A ``fusionrec worker`` subprocess with its own topics (uuid prefix) and consumer group."""

    bootstrap: str
    platforms: tuple[str, ...]
    extra_env: Mapping[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "FUSIONREC_KAFKA_BOOTSTRAP": self.bootstrap,
            "FUSIONREC_PLATFORMS": ",".join(self.platforms),
            "FUSIONREC_TOPIC_PREFIX": f"{self.run_id}.",
            "FUSIONREC_APP_ID": self.run_id,
            "FUSIONREC_WEB_PORT": str(self.port),
            "FUSIONREC_DATA_DIR": f"/tmp/fusionrec-test/{self.run_id}",
            **self.extra_env,
        }

    def config(self) -> Config:
        return load_config(env=self.env)

    def start(self, log_dir: Path) -> None:
        self.log_path = log_dir / f"worker-{self.run_id}-{int(time.time())}.log"
        env = {**os.environ, **self.env, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"],
                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def health(self) -> dict[str, object]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                return dict(orjson.loads(resp.read()))
        except OSError:
            return {}

    def ready(self) -> tuple[int, dict[str, object]]:
        """``GET /ready``: (status, body); (0, {}) while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as resp:
                return resp.status, dict(orjson.loads(resp.read()))
        except urllib.error.HTTPError as exc:  # 503 until ready
            return exc.code, dict(orjson.loads(exc.read() or b"{}"))
        except OSError:
            return 0, {}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def wait_ready(self, items: int, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            h = self.health()
            if h.get("catalog_ready") and int(h.get("items", -1)) >= items:  # type: ignore[call-overload]
                return
            time.sleep(0.5)
        raise AssertionError(f"worker not ready after {timeout_s}s:\n{self.log_tail()}")

    def wait_http_ready(self, timeout_s: float = 240) -> dict[str, object]:
        """Poll ``/ready`` until it answers 200 (the body); fails at once if the worker exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            status, body = self.ready()
            if status == 200:
                return body
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout_s}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


async def produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> list[RecordMetadata]:
    """Send (topic, key, value) in order; return each message's metadata (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 << 20)
    await producer.start()
    try:
        return [await producer.send_and_wait(t, key=k, value=v) for t, k, v in messages]
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, *, expect: int, timeout_s: float = 60) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``expect`` records arrived or the time is up."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for part in batches.values():
                records.extend(part)
        if len(records) >= expect:  # linger briefly: more than expected is a failure too
            batches = await consumer.getmany(timeout_ms=1500)
            for part in batches.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def consume_to_end(bootstrap: str, topic: str, timeout_s: float = 60) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its end offsets as of the call (all partitions, in full)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not (tps := consumer.assignment()):  # without a group, every partition is assigned
            if time.monotonic() > deadline:
                raise AssertionError(f"no partitions of {topic} assigned after {timeout_s}s")
            await asyncio.sleep(0.1)
        ends = await consumer.end_offsets(list(tps))
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"read of {topic} did not reach its end offsets {ends} in {timeout_s}s")
            for part in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)

"""One offered-rate step: publish on schedule, collect the answers, drain, and account for the CPU.

1. The publisher process prepares its events and announces its start time; CPU counters of every
   measured process group (workers, broker, this process) and of the machine are sampled then.
2. While it sends, the step is watched: once it can no longer pass (more than 1 % of its events
   already later than 1 s), the publisher is stopped, so an overloaded worker builds a short backlog,
   not minutes of it.  The step counts as failed, over the events that were sent.
3. Drain: wait until every sent event is answered, or nothing new arrived for ``drain_idle_s``
   (at most ``drain_max_s``), so that the next step starts on an idle worker.  CPU counters again.
4. Figures: latency from the scheduled send to receipt (``latency.py``), answered fraction, the CPU
   each group used in the window, as a share of the machine.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.collector import Collector
from stream.bench.latency import LatencyFigures, certainly_fails, step_figures, step_passes
from stream.bench.procstat import CpuSample, cpu_split

__all__ = ["StepRunner", "StepOutcome"]

READY_TIMEOUT_S = 600.0  # preparing a few hundred thousand events takes seconds; a starved machine more
WATCH_EVERY_S = 0.5


@dataclass
class StepOutcome:
    tag: str
    asked_rate: float
    latency: LatencyFigures
    publisher: dict[str, Any]
    cpu_s: dict[str, float]  # CPU seconds per group in the window (publisher: its sending only)
    cpu_share: dict[str, float]  # the same as shares of the machine (all cores), plus machine / other
    window_s: float
    aborted: bool
    drained: bool
    drain_s: float
    repeats: int
    loadavg_1m: float
    start_ms: float  # wall clock of the first scheduled send
    last_receipt_ms: float | None  # wall clock of the last answer received (None: none)
    worker_loop: list[dict[str, float | None]] = field(default_factory=list)  # per worker: busy share, events per batch

    @property
    def passed(self) -> bool:
        return not self.aborted and step_passes(self.latency)

    @property
    def answered_per_s(self) -> float | None:
        """Answers per second from the first scheduled send to the last answer."""
        if self.last_receipt_ms is None or self.last_receipt_ms <= self.start_ms:
            return None
        return self.latency.answered / ((self.last_receipt_ms - self.start_ms) / 1000)

    @property
    def achieved_rate(self) -> float | None:
        rate = self.publisher.get("achieved_rate")
        return float(rate) if rate is not None else None

    def cpu_us_per_event(self, group: str, events: int | None = None) -> float | None:
        """CPU µs of ``group`` per answered event (or per ``events``)."""
        n = self.latency.answered if events is None else events
        return round(self.cpu_s[group] * 1e6 / n, 1) if n and group in self.cpu_s else None

    def as_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "asked_rate": self.asked_rate,
            "achieved_rate": None if self.achieved_rate is None else round(self.achieved_rate, 1),
            "passed": self.passed,
            "aborted": self.aborted,
            "answered_per_s": None if self.answered_per_s is None else round(self.answered_per_s, 1),
            **self.latency.as_json(),
            "repeats": self.repeats,
            "drained": self.drained,
            "drain_s": round(self.drain_s, 1),
            "window_s": round(self.window_s, 1),
            "cpu_s": {k: round(v, 3) for k, v in self.cpu_s.items()},
            "cpu_share": self.cpu_share,
            "loadavg_1m": round(self.loadavg_1m, 2),
            "publisher": {k: v for k, v in self.publisher.items() if k != "tag"},
            "worker_loop": self.worker_loop,
        }


class StepRunner:
    """Runs steps against one set of topics; ``groups()`` names the root pids whose CPU is measured."""

    def __init__(
        self,
        env: Mapping[str, str],
        workload_path: Path,
        collector: Collector,
        groups: Callable[[], dict[str, list[int]]],
        tmp: Path,
        log: Callable[[str], None] = print,
    ) -> None:
        self.env = dict(env)
        self.workload_path = workload_path
        self.collector = collector
        self.groups = groups
        self.tmp = tmp
        self.log = log
        self.cores = os.cpu_count() or 1
        self.publisher_pid: int | None = None

    async def run(
        self,
        tag: str,
        rate: float,
        count: int,
        start: int,
        *,
        abort: bool = True,
        drain_idle_s: float = 20.0,
        drain_max_s: float = 300.0,
        on_started: Callable[[], Any] | None = None,
    ) -> StepOutcome:
        receipts = self.collector.register(tag, count)
        out = self.tmp / f"pub-{tag}.json"
        cmd = [
            sys.executable, "-m", "stream.bench.publisher", "--workload", str(self.workload_path), "--tag", tag,
            "--start", str(start), "--count", str(count), "--rate", repr(float(rate)), "--out", str(out),
        ]  # fmt: skip
        pub = await asyncio.create_subprocess_exec(*cmd, env=self.env, stdout=asyncio.subprocess.PIPE)
        self.publisher_pid = pub.pid
        try:
            assert pub.stdout is not None
            line = await asyncio.wait_for(pub.stdout.readline(), READY_TIMEOUT_S)
            if not line:
                raise RuntimeError(f"publisher of step {tag} exited with code {await pub.wait()} before starting")
            start_ms = float(json.loads(line)["start_wall_ms"])
            before = CpuSample.take(time.time(), self.groups(), ("collector", time.process_time()))
            if on_started is not None:
                on_started()
            spacing = 1000.0 / rate if rate > 0 else 0.0
            scheduled = start_ms + np.arange(count) * spacing
            aborted = False
            while pub.returncode is None:
                try:
                    await asyncio.wait_for(pub.wait(), WATCH_EVERY_S)
                except asyncio.TimeoutError:
                    pass
                if abort and rate > 0 and not aborted and pub.returncode is None:
                    if certainly_fails(scheduled, receipts.received_ms, time.time() * 1000, count):
                        aborted = True
                        self.log(f"[bench]   {tag}: cannot pass any more (>1 % of events over 1 s): stopping the publisher")
                        pub.terminate()
            if pub.returncode != 0:
                raise RuntimeError(f"publisher of step {tag} exited with code {pub.returncode}")
        finally:
            if pub.returncode is None:
                pub.kill()
                await pub.wait()
            self.publisher_pid = None
        stats = json.loads(out.read_text())
        sent = int(stats["published"])
        drain_start = time.monotonic()
        while receipts.answered < sent and time.monotonic() - drain_start < drain_max_s:
            if time.monotonic() - max(receipts.last_receipt_mono, drain_start) > drain_idle_s:
                break
            await asyncio.sleep(0.1)
        drain_s = time.monotonic() - drain_start
        after = CpuSample.take(time.time(), self.groups(), ("collector", time.process_time()))
        fig = step_figures(scheduled[:sent], receipts.received_ms[:sent])
        last = float(np.nanmax(receipts.received_ms)) if receipts.answered else None
        cpu_s = {name: after.groups[name] - before.groups.get(name, 0.0) for name in after.groups}
        cpu_s["publisher"] = float(stats["cpu_send_s"])
        share = cpu_split(before, after, self.cores, extra={"publisher": cpu_s["publisher"]})
        self.collector.forget(tag)
        return StepOutcome(
            tag=tag,
            asked_rate=rate,
            latency=fig,
            publisher=stats,
            cpu_s=cpu_s,
            cpu_share=share,
            window_s=after.wall_s - before.wall_s,
            aborted=aborted,
            drained=receipts.answered >= sent,
            drain_s=drain_s,
            repeats=receipts.repeats,
            loadavg_1m=after.loadavg_1m,
            start_ms=start_ms,
            last_receipt_ms=last,
        )


def describe(o: StepOutcome) -> str:
    """One console line per step."""
    lat = o.latency
    p = lambda v: "inf" if not math.isfinite(v) else f"{v:,.0f}"  # noqa: E731
    return (
        f"{o.asked_rate:,.0f}/s asked ({(o.achieved_rate or 0):,.0f} achieved), {lat.published:,} events: "
        f"p50 {p(lat.p50_ms)} / p95 {p(lat.p95_ms)} / p99 {p(lat.p99_ms)} / max {p(lat.max_ms)} ms, "
        f"answered {100 * lat.answered_fraction:.2f} %{' (stopped early)' if o.aborted else ''} -> "
        f"{'PASS' if o.passed else 'fail'}"
    )

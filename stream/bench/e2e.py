"""End to end through a real broker: the sustained rate, open-loop latency and CPU per event.

For each run (a workload, a catalog, 1 or more ``fusionrec worker`` processes in one group):

1. fresh topics (own prefix and group) on the bench's throw-away broker; the catalog and the identity
   links are published before the workers start; the workers load (encode) the catalog;
2. warm-up: ``warmup_events`` published as fast as possible and drained, so the online learner has
   trained and published its weights before anything is measured;
3. the search (``search.py``): offered-rate steps of ``step_s`` seconds each, open loop
   (``publisher.py``), latency = receipt of the recommendation − the event's scheduled send time
   (``latency.py``), each step drained before the next (``step.py``); a step passes when p99 ≤ 1 s
   and ≥ 99.9 % of its events were answered; the sustained rate is the highest passing offered rate;
4. per step, CPU of every process group (workers, broker, publisher, the bench's own consumer) as a
   share of the machine, and the workers' CPU µs per answered event.

Workloads: the synthetic generator (``synthetic.py``; default: 2 platforms, 100k people, catalogs of
8,000 and 100,000 items) or a dataset folder (``--dataset``), converted by ``workload.py``.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.catalog import publish_catalog
from stream.bench.collector import Collector
from stream.bench.profile import aggregate_profile, start_py_spy
from stream.bench.search import SearchPlan, Tried, next_rate, sustained_index
from stream.bench.step import StepOutcome, StepRunner, describe
from stream.bench.synthetic import SyntheticSpec, ensure_synthetic
from stream.bench.workers import (
    BLAS_ENV,
    log_tail,
    worker_counters,
    run_env,
    start_broker,
    start_workers,
    stop_workers,
    vm_hwm_mb,
    wait_ready,
)
from stream.bench.workload import WORKLOAD_FILE, Workload, distinct_per_batch, load_workload

__all__ = ["E2EPlan", "bench_e2e", "run_summary", "headline"]

METHOD = (
    "open loop: event i of a step is scheduled at t_start + i/rate and sent on schedule whatever the worker "
    "does; latency = the bench consumer's receipt of the recommendation - the event's scheduled send time "
    "(wall clock, one machine); an unanswered event counts as infinite; percentiles are nearest-rank over "
    "every published event; a step passes when p99 <= 1000 ms and >= 99.9 % of its events are answered; "
    "sustained rate = the highest passing offered rate (steps climb geometrically, then one bisection); "
    "worker CPU = utime+stime of the worker process trees over the step (from /proc) / answered events"
)
SETTLE_S = 5.0
"""Pause after the warm-up: with several workers, the group's last rebalance can end after every
worker's catalog is ready, and a step must not measure a rebalance."""


@dataclass(frozen=True)
class E2EPlan:
    """What the end-to-end bench runs (built from the CLI options)."""

    dataset: str | None = None  # a dataset folder; None: the synthetic workload
    catalogs: tuple[int, ...] = (8_000, 100_000)  # synthetic catalog sizes, one run each with 1 worker
    workers: tuple[int, ...] = (1, 2)  # worker counts; counts > 1 run on the first catalog only
    people: int = 100_000
    platforms: int = 2
    events: int = 1_000_000
    seed: int = 0
    step_s: float = 30.0
    warmup_events: int = 10_000
    search: SearchPlan = SearchPlan()
    device: str = "auto"
    worker: str = "fusionrec"  # or "echo": the harness's ceiling (stream/bench/echo_worker.py)
    profile_dir: str | None = None
    drain_idle_s: float = 20.0
    drain_max_s: float = 300.0


def plan_from_options(options: Any) -> E2EPlan:
    """The plan from ``BenchOptions`` (``--quick``: a tiny synthetic set, 5 s steps, a short ladder)."""
    search = SearchPlan(
        start_rate=options.e2e_start_rate,
        factor=options.e2e_rate_factor,
        max_rate=options.e2e_max_rate,
        rates=tuple(options.e2e_rates),
        refinements=options.e2e_refinements,
    )
    plan = E2EPlan(
        dataset=options.e2e_dataset,
        catalogs=tuple(options.e2e_catalogs),
        workers=tuple(options.e2e_workers),
        people=options.e2e_people,
        platforms=options.e2e_platforms,
        events=options.e2e_events,
        seed=options.e2e_seed,
        step_s=options.e2e_step_s,
        warmup_events=options.e2e_warmup_events,
        search=search,
        device=options.device,
        worker=options.e2e_worker,
        profile_dir=options.profile_dir,
    )
    if options.quick:
        given = options.extra.get("e2e_given", set())
        plan = replace(
            plan,
            catalogs=plan.catalogs if "catalogs" in given else (1_000,),
            people=plan.people if "people" in given else 5_000,
            events=plan.events if "events" in given else 50_000,
            step_s=plan.step_s if "step_s" in given else 5.0,
            warmup_events=plan.warmup_events if "warmup_events" in given else 500,
            search=search if "rates" in given else replace(search, start_rate=100.0, factor=2.0, max_rate=400.0),
        )
    return plan


# ------------------------------------------------------------------------------------------ runs


def bench_e2e(
    options: Any, log: Callable[[str], None] = print, partial: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Every run of the plan on one throw-away broker; the JSON section ``e2e``.

    ``partial`` gets the section after every run: a long run (the first start on a 100k catalog
    encodes for many minutes) keeps what it measured if it is stopped later.
    """
    plan = plan_from_options(options)
    tmp = Path(tempfile.mkdtemp(prefix="fusionrec-bench-"))
    cluster: Any = None
    out: dict[str, Any] = {"method": METHOD, "plan": _plan_json(plan), "runs": {}}
    previous = signal.signal(signal.SIGTERM, _sigterm_to_exit)
    try:
        cluster, bootstrap = start_broker(tmp)
        out["broker"] = f"Apache Kafka (LocalCluster, 1 node, own data dir and free port) at {bootstrap}"
        for key, folder, n_workers in _runs(plan, log):
            log(f"[bench] e2e run {key}: {n_workers} worker(s), workload {folder.name}")
            out["runs"][key] = run_one(plan, cluster, bootstrap, folder, n_workers, tmp, key, log)
            if partial is not None:
                partial({**out, **headline(out["runs"], plan), "partial": True})
    finally:
        signal.signal(signal.SIGTERM, previous)
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    out.update(headline(out["runs"], plan))
    return out


def _runs(plan: E2EPlan, log: Callable[[str], None]) -> list[tuple[str, Path, int]]:
    """(run key, dataset folder, workers): 1 worker per catalog, more workers on the first catalog."""
    if plan.dataset:
        folder = Path(plan.dataset)
        return [(f"w{n}-{folder.resolve().name}", folder, n) for n in plan.workers]
    runs: list[tuple[str, Path, int]] = []
    for k, items in enumerate(plan.catalogs):
        spec = SyntheticSpec(items=items, people=plan.people, platforms=plan.platforms, events=plan.events, seed=plan.seed)
        started = time.monotonic()
        folder = ensure_synthetic(spec)
        log(f"[bench] synthetic workload {folder} ({time.monotonic() - started:.1f}s)")
        counts = plan.workers if k == 0 else tuple(n for n in plan.workers if n == 1)
        runs += [(f"w{n}-c{items}", folder, n) for n in counts]
    return runs


def run_one(
    plan: E2EPlan, cluster: Any, bootstrap: str, folder: Path, n_workers: int, tmp: Path, key: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """Fresh topics, catalog and links, ``n_workers`` workers, warm-up, the search; workers always stopped."""
    from fusionrec.config import load_config
    from fusionrec.pipeline.precision import resolve_precision

    wl = load_workload(folder)
    wl_path = folder / WORKLOAD_FILE if (folder / WORKLOAD_FILE).exists() else tmp / f"{key}.npz"
    if not wl_path.exists():
        wl.save(wl_path)
    run_id = f"bench{int(time.time())}{key.replace('-', '')}"
    env = run_env(bootstrap, run_id, list(wl.platforms), plan.device)
    cfg = load_config(env=env)
    n_items, links = asyncio.run(publish_catalog(cfg, folder, wl))
    log(f"[bench]   catalog published: {n_items} items, {links} identity links")
    workers = start_workers(env, n_workers, tmp / run_id, plan.worker)
    try:
        ready_s = wait_ready(workers, n_items)
        log(f"[bench]   {n_workers} worker(s) ready in {ready_s:.0f}s")
        broker_pids = [pid for node in cluster.nodes if (pid := node.pid()) is not None]
        groups = lambda: {**{f"worker{k}": [p.pid] for k, (p, _) in enumerate(workers)}, "broker": broker_pids}  # noqa: E731
        result = asyncio.run(_search(plan, cfg, env, wl, wl_path, workers, groups, tmp, log))
        result.update(
            worker=plan.worker,
            workers=n_workers,
            catalog_items=n_items,
            workload=wl.name,
            platforms=list(wl.platforms),
            people=len(wl.persons),
            identity_links=links,
            catalog_ready_s=round(ready_s, 1),
            worker_peak_rss_mb=[vm_hwm_mb(p.pid) for p, _ in workers],
            worker_env={k: env[k] for k in (*BLAS_ENV, "FUSIONREC_EXACT_PRECISION") if k in env},
            exact_precision=resolve_precision(cfg.model.exact_precision),  # as the workers resolve "auto" on this CPU
        )
        return result
    except BaseException:
        for w in range(n_workers):
            log(f"[bench] worker{w} log tail:\n{log_tail(tmp / run_id / f'worker{w}.log')}")
        raise
    finally:
        stop_workers(workers)


async def _search(
    plan: E2EPlan,
    cfg: Any,
    env: dict[str, str],
    wl: Workload,
    wl_path: Path,
    workers: list[Any],
    groups: Callable[[], dict[str, list[int]]],
    tmp: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    collector = Collector(cfg.kafka, cfg.kafka.recs_topic)
    await collector.start()
    runner = StepRunner(env, wl_path, collector, groups, tmp, log)
    tag = cfg.worker.app_id
    cursor = 0
    try:
        # warm-up: as fast as the publisher goes, drained before anything is measured
        warm = await runner.run(f"{tag}-warm", 0.0, plan.warmup_events, cursor, abort=False, drain_idle_s=60.0, drain_max_s=1800.0)
        cursor += plan.warmup_events
        await asyncio.sleep(SETTLE_S)
        log(
            f"[bench]   warm-up: {warm.latency.answered:,}/{warm.latency.published:,} answered, "
            f"{warm.window_s:.1f}s ({warm.latency.answered / max(warm.window_s, 1e-9):,.0f} events/s)"
        )
        done: list[Tried] = []
        steps: list[StepOutcome] = []
        recs_by_worker: list[list[float | None]] = []
        spans: list[tuple[int, int]] = []  # (first workload event, events published) of each step
        while (nxt := next_rate(plan.search, done)) is not None:
            rate, kind = nxt
            count = max(1, round(rate * plan.step_s))
            before = await asyncio.to_thread(worker_counters, workers)
            o = await runner.run(
                f"{tag}-s{len(steps) + 1}-r{round(rate)}", rate, count, cursor,
                drain_idle_s=plan.drain_idle_s, drain_max_s=plan.drain_max_s,
            )  # fmt: skip
            after = await asyncio.to_thread(worker_counters, workers)
            recs_by_worker.append([_delta(a, b, "recommendations") for a, b in zip(before, after)])
            o.worker_loop = [_loop(a, b) for a, b in zip(before, after)]
            spans.append((cursor, o.latency.published))
            cursor += o.latency.published
            steps.append(o)
            done.append(Tried(rate, o.passed, kind))
            log(f"[bench]   step {len(steps)} ({kind}): {describe(o)}")
            dead = [k for k, (p, _) in enumerate(workers) if p.poll() is not None]
            if dead:  # a crash is not a rate limit: no figure from here on would mean anything
                raise RuntimeError(f"worker(s) {dead} exited during step {len(steps)}")
            if not o.drained:
                log(f"[bench]   step {len(steps)} did not drain within its limits: the search stops here")
                break
        profile = None
        if plan.profile_dir:
            best = sustained_index(done)
            rate = done[best].rate if best is not None else min(t.rate for t in done)
            profile = await _profile_step(plan, runner, workers, f"{tag}-profile", rate, cursor)
    finally:
        await collector.stop()
    persons = np.concatenate([wl.ev_person[wl.indices(s, n)] for s, n in spans]) if spans else np.array([], dtype=np.int32)
    summary = run_summary(steps, [t.kind for t in done], recs_by_worker, len(workers))
    summary["warmup"] = warm.as_json()
    summary["distinct_people_per_batch_detail"] = distinct_per_batch(persons)
    summary["distinct_people_per_batch"] = summary["distinct_people_per_batch_detail"]["mean"]
    summary["collector_unknown_answers"] = collector.unknown  # answers to no registered step (late ones)
    if profile is not None:
        summary["profile"] = profile
    return summary


async def _profile_step(plan: E2EPlan, runner: StepRunner, workers: list[Any], tag: str, rate: float, cursor: int) -> dict[str, Any]:
    """One extra step at ``rate`` with py-spy on the first worker (not part of the search)."""
    seconds = int(min(plan.step_s, 20.0))
    raw = Path(plan.profile_dir or ".") / f"worker-{tag}.raw.txt"
    spy: list[Any] = []
    o = await runner.run(
        tag, rate, max(1, round(rate * seconds)), cursor, abort=False,  # the profile must cover the whole step
        on_started=lambda: spy.append(start_py_spy(workers[0][0].pid, seconds, raw)),
    )  # fmt: skip
    if not spy or spy[0] is None:
        return {"error": "py-spy not found (pip install py-spy)", "step": o.as_json()}
    await asyncio.to_thread(spy[0].wait, 120)
    return {"rate": rate, "seconds": seconds, "step": o.as_json(), **aggregate_profile(raw)}


# --------------------------------------------------------------------------------------- figures


def run_summary(
    steps: list[StepOutcome], kinds: list[str], recs_by_worker: list[list[float | None]], n_workers: int
) -> dict[str, Any]:
    """The run's figures at its sustained rate, and every step."""
    tried = [Tried(o.asked_rate, o.passed) for o in steps]
    best = sustained_index(tried)
    rows = []
    for o, kind, recs in zip(steps, kinds, recs_by_worker):
        row = {"kind": kind, **o.as_json(), **_worker_cpu(o, recs, n_workers)}
        rows.append(row)
    out: dict[str, Any] = {"steps": rows, "sustained_step": best}
    if best is None:
        out.update(
            sustained_events_per_s=0.0,
            sustained_achieved_events_per_s=None,
            p50_ms_at_sustained=None,
            p95_ms_at_sustained=None,
            p99_ms_at_sustained=None,
            max_ms_at_sustained=None,
            answered_fraction_at_sustained=None,
            worker_cpu_us_per_event=None,
            worker_cpu_us_per_event_by_worker=None,
            cpu_share_at_sustained=None,
        )
    else:
        o, row = steps[best], rows[best]
        out.update(
            sustained_events_per_s=o.asked_rate,
            sustained_achieved_events_per_s=row["achieved_rate"],
            p50_ms_at_sustained=row["p50_ms"],
            p95_ms_at_sustained=row["p95_ms"],
            p99_ms_at_sustained=row["p99_ms"],
            max_ms_at_sustained=row["max_ms"],
            answered_fraction_at_sustained=row["answered_fraction"],
            worker_cpu_us_per_event=row["worker_cpu_us_per_event"],
            worker_cpu_us_per_event_by_worker=row["worker_cpu_us_per_event_by_worker"],
            cpu_share_at_sustained=o.cpu_share,
        )
    fails = [k for k, o in enumerate(steps) if not o.passed and (best is None or o.asked_rate > steps[best].asked_rate)]
    first_fail = min(fails, key=lambda k: steps[k].asked_rate) if fails else None
    out["first_failing_rate"] = steps[first_fail].asked_rate if first_fail is not None else None
    return out


def _worker_cpu(o: StepOutcome, recs: list[float | None], n_workers: int) -> dict[str, Any]:
    """Workers' CPU per answered event: together, and each per the recommendations it published."""
    names = [f"worker{k}" for k in range(n_workers)]
    total = sum(o.cpu_s.get(n, 0.0) for n in names)
    answered = o.latency.answered
    per_worker = [
        round(o.cpu_s[n] * 1e6 / r, 1) if r else None for n, r in zip(names, recs if recs else [None] * n_workers)
    ]
    return {
        "worker_cpu_us_per_event": round(total * 1e6 / answered, 1) if answered else None,
        "worker_cpu_us_per_event_by_worker": per_worker,
        "worker_recommendations": [None if r is None else round(r) for r in recs],
        "worker_cpu_share": round(sum(o.cpu_share.get(n, 0.0) for n in names), 4),
    }


def _delta(a: dict[str, float | None] | None, b: dict[str, float | None] | None, key: str) -> float | None:
    if a is None or b is None or a.get(key) is None or b.get(key) is None:
        return None
    return float(b[key]) - float(a[key])  # type: ignore[arg-type]


def _loop(a: dict[str, float | None] | None, b: dict[str, float | None] | None) -> dict[str, float | None]:
    """How a worker's hot loop spent the step: busy share and events per micro-batch."""
    wait, busy = _delta(a, b, "loop_wait_s"), _delta(a, b, "loop_process_s")
    events, batches = _delta(a, b, "batch_events"), _delta(a, b, "batches")
    return {
        "busy_share": round(busy / (busy + wait), 3) if busy is not None and wait is not None and busy + wait > 0 else None,
        "events_per_batch": round(events / batches, 1) if events is not None and batches else None,
    }


HEADLINE_KEYS = (
    "sustained_events_per_s",
    "sustained_achieved_events_per_s",
    "p99_ms_at_sustained",
    "answered_fraction_at_sustained",
    "worker_cpu_us_per_event",
    "worker_cpu_us_per_event_by_worker",
    "catalog_items",
    "distinct_people_per_batch",
    "cpu_share_at_sustained",
    "first_failing_rate",
    "workers",
)


def headline(runs: dict[str, dict[str, Any]], plan: E2EPlan) -> dict[str, Any]:
    """Top-level keys: the first 1-worker run's figures, ``by_catalog`` and ``by_workers``.

    The keys of the earlier bench stay, with the closest meaning: ``events_per_s`` is now the
    sustained rate, ``offered_per_s`` the achieved offered rate of that step, ``p50/p95/p99_ms`` its
    percentiles, ``events_per_s_by_workers`` the sustained rate of each worker count.
    """
    pick = lambda run: {k: run.get(k) for k in HEADLINE_KEYS}  # noqa: E731
    one = {key: run for key, run in runs.items() if run.get("workers") == 1}
    first = next(iter(one.values()), next(iter(runs.values()), {}))
    by_catalog = {str(run["catalog_items"]): {"run": key, **pick(run)} for key, run in one.items()}
    by_workers: dict[str, Any] = {}
    for key, run in runs.items():
        if run.get("catalog_items") == first.get("catalog_items"):
            by_workers[str(run["workers"])] = {"run": key, **pick(run)}
    step = first["steps"][first["sustained_step"]] if first.get("sustained_step") is not None else {}
    nan = float("nan")
    return {
        **pick(first),
        "by_catalog": by_catalog,
        "by_workers": by_workers,
        # the earlier keys
        "events_per_s": first.get("sustained_events_per_s", nan),
        "offered_per_s": step.get("achieved_rate") or nan,
        "p50_ms": step.get("p50_ms"),
        "p95_ms": step.get("p95_ms"),
        "p99_ms": step.get("p99_ms"),
        "complete_at_offered": step.get("passed"),
        "events_per_s_by_workers": {f"workers_{n}": r["sustained_events_per_s"] for n, r in by_workers.items()},
        "latency": METHOD,
    }


def _plan_json(plan: E2EPlan) -> dict[str, Any]:
    out = asdict(plan)
    out["search"] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out["search"].items()}
    return out


def _sigterm_to_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks stop the workers and the broker


if __name__ == "__main__":
    print("the end-to-end bench runs from `fusionrec bench --only e2e`; the publisher is stream.bench.publisher", file=sys.stderr)
    sys.exit(2)

"""Run the benchmarks in order, describe the machine, write the JSON and print a summary."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATASET = os.path.join("data", "movielens-small")
FULL_INDEX_SIZES = (10_000, 100_000, 1_000_000)
QUICK_INDEX_SIZES = (2_000,)


@dataclass
class BenchOptions:
    dataset: str = DEFAULT_DATASET  # core and encoder (the CLI's --dataset sets e2e_dataset too)
    device: str = "auto"  # auto | cpu | cuda
    quick: bool = False  # tiny sizes, a smoke run
    skip_e2e: bool = False
    index_sizes: tuple[int, ...] | None = None
    only: tuple[str, ...] = ()  # subset of core, encoder, index, e2e (empty: all)
    sequence_model: bool = False  # core: serve the learned sequence model (trained on the warm-up)
    # end to end (stream/bench/e2e.py): the sustained-rate search
    e2e_dataset: str | None = None  # a dataset folder; None: the synthetic workload
    e2e_catalogs: tuple[int, ...] = (8_000, 100_000)  # synthetic catalog sizes
    e2e_workers: tuple[int, ...] = (1, 2)  # counts above 1 run on the first catalog only
    e2e_people: int = 100_000
    e2e_platforms: int = 2
    e2e_events: int = 1_000_000
    e2e_seed: int = 0
    e2e_rates: tuple[float, ...] = ()  # an explicit ladder of offered rates (default: geometric)
    e2e_start_rate: float = 500.0
    e2e_rate_factor: float = 2**0.5
    e2e_max_rate: float = 100_000.0
    e2e_refinements: int = 1
    e2e_step_s: float = 30.0
    e2e_warmup_events: int = 10_000
    e2e_worker: str = "fusionrec"  # "echo": measure the harness's own ceiling instead of the worker
    profile_dir: str | None = None  # py-spy the worker during one extra step at the sustained rate
    extra: dict[str, Any] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python, date and the load average at the time of the run."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = os.cpu_count() or 1
    return {
        "cpu": model,
        "cores": cores,
        "ram_gb": round(ram_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_start": list(os.getloadavg()),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "blas_threads": blas_threads(),
        "summary": f"{model}, {cores} cores, {ram_gb:.0f} GiB RAM",
    }


THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads() -> dict[str, int]:
    """Threads of each BLAS/OpenMP pool loaded so far (numpy's OpenBLAS matters for the core)."""
    try:
        import numpy  # noqa: F401  (loads its BLAS)
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {f"{i.get('internal_api')}:{Path(i.get('filepath', '')).name}": int(i.get("num_threads", 0)) for i in threadpool_info()}


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_bench(options: BenchOptions, out: str | None = None, log: Any = print) -> dict[str, Any]:
    """Run every benchmark asked for; return (and write to ``out``) the report."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    device = resolve_device(options.device)
    wanted = set(options.only or ("core", "encoder", "index", "e2e"))
    if options.skip_e2e:
        wanted.discard("e2e")
    report: dict[str, Any] = {
        "machine": "",
        "device": device,
        "quick": options.quick,
        "dataset": options.dataset,
        "command": " ".join(["fusionrec", *sys.argv[1:]]) if sys.argv[0].endswith(("fusionrec", "cli.py")) else None,
    }
    info = machine()
    report["machine"] = info["summary"]
    report["machine_info"] = info

    def stage(name: str, fn: Any) -> None:
        log(f"[bench] {name} ... (load average {os.getloadavg()[0]:.2f})")
        start = time.monotonic()
        result = fn()
        result["loadavg_1m"] = round(os.getloadavg()[0], 2)
        result["bench_seconds"] = round(time.monotonic() - start, 1)
        report[name] = result
        log(f"[bench] {name}: {summarise(name, result)}")
        if out:
            write(report, out)  # partial results survive a later failure

    if "core" in wanted:  # first: the process's peak RSS then reflects the core alone (plus the model)
        from stream.bench.core import bench_core
        from stream.bench.memory import memory_figures

        core_result: dict[str, Any] = {}

        def run_core() -> dict[str, Any]:
            core_result.update(bench_core(options.dataset, device=device, quick=options.quick, sequence_model=options.sequence_model))
            return {k: v for k, v in core_result.items() if not k.startswith("_")}

        stage("core", run_core)
        stage("memory", lambda: memory_figures(core_result))
    if "encoder" in wanted:
        from stream.bench.encoder import bench_encoder

        stage("encoder", lambda: bench_encoder(options.dataset, device=device, quick=options.quick))
    if "index" in wanted:
        from stream.bench.index import bench_index

        sizes = options.index_sizes or (QUICK_INDEX_SIZES if options.quick else FULL_INDEX_SIZES)
        stage("index", lambda: bench_index(sizes, device=device, quick=options.quick))
    if "e2e" in wanted:
        from stream.bench.e2e import bench_e2e

        def partial_e2e(section: dict[str, Any]) -> None:
            report["e2e"] = section
            if out:
                write(report, out)

        stage("e2e", lambda: bench_e2e(options, log=log, partial=partial_e2e))
    report.setdefault("memory", {})["peak_rss_mb_end"] = round(peak_rss_mb(), 1)
    report["machine_info"]["loadavg_end"] = list(os.getloadavg())
    if out:
        write(report, out)
    return report


def write(report: dict[str, Any], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{out}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, out)


def _jsonable(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:
        pass
    return str(value)


def summarise(name: str, r: dict[str, Any]) -> str:
    """One line per benchmark for the console."""
    if name == "core":
        return f"{r['events_per_s']:.0f} events/s in-process ({r['events']} events, {r['recommendations']} recs)"
    if name == "memory":
        return f"{r['bytes_per_person']:.0f} B/person serialised, peak RSS {r['peak_rss_mb']:.0f} MB"
    if name == "encoder":
        return (
            f"{r['items_per_s']:.0f} items/s vs sentence-transformers {r['sentence_transformers_items_per_s']:.0f} "
            f"(ratio {r['ratio_vs_sentence_transformers']:.2f})"
        )
    if name == "index":
        line = f"exact {r['queries_per_s']:.0f} queries/s, overhead vs faiss {100 * r['overhead_vs_faiss']:.1f}%"
        if r.get("ivf_queries_per_s") is not None:
            line += f"; IVF {r['ivf_queries_per_s']:.0f} queries/s, recall@10 {r['ivf_recall_at_10']:.3f}"
        return f"{line} ({r['headline']})"
    if name == "e2e":
        return "; ".join(_e2e_line(key, run) for key, run in r.get("by_catalog", {}).items()) + "".join(
            f"; {n} workers: {_e2e_line('', run)}" for n, run in r.get("by_workers", {}).items() if n != "1"
        )
    return json.dumps(r)[:200]


def _e2e_line(catalog: str, r: dict[str, Any]) -> str:
    """``sustained 5,657 events/s (p99 812 ms, worker 180 µs/event) at 8000 items``."""
    where = f" at {catalog} items" if catalog else ""
    if not r.get("sustained_events_per_s"):
        return f"no offered rate passed{where} (first fail {r.get('first_failing_rate')}/s)"
    cpu = r.get("worker_cpu_us_per_event")
    return (
        f"sustained {r['sustained_events_per_s']:,.0f} events/s (p99 {r.get('p99_ms_at_sustained')} ms, "
        f"worker {'?' if cpu is None else f'{cpu:,.0f}'} µs/event){where}"
    )

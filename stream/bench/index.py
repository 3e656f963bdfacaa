"""Index: the candidate index (``index/candidates.py``, ``CandidateIndex``) at catalog sizes, both kinds.

For each size, on the same synthetic vectors (:func:`cluster_centres`, :func:`synthetic`: dim 384, unit
norm, around n/100 cluster centres that share a common direction, as text embeddings do):

* **exact** (a platform up to ``model.index_exact_max`` items): top-10 queries/s in batches of 256 and
  single queries, timed call by call against raw ``faiss.IndexFlatIP`` on the same vectors (its
  overhead), and whether both return the same top-10 (the same scores: near-ties may swap rows);
* **IVF** (a platform above it; forced here with ``exact_max=0`` so that every size is measured both
  ways): build time (k-means training included), queries/s in batches and single, and recall@10
  against the exact kind's answers to the same queries, at a few ``nprobe``;
* **both**: the time to add a batch of new rows (an items micro-batch) and to delete them again.

On a GPU (``--device cuda``) the candidate index searches exactly whatever the size (``gpu-exact``,
``index/gpu.py``), so the IVF part is skipped; its timing reference is then the bare kernel
(:class:`TorchFlat`: one product and ``torch.topk`` over a resident matrix) and its results are still
checked against faiss' CPU ``IndexFlatIP``.  One thread everywhere (faiss' OpenMP and the BLAS of the exact search,
``threads=1``), as the worker runs (``model.index_threads``).

The clusters are well separated, which suits IVF: a query's top 10 lie in its own cluster, so recall
hardly depends on ``nprobe`` here.  On real text embeddings it does, and is lower (the module docstring
of ``index/candidates.py`` quotes 0.68 at 8 probes on the bench's synthetic 4k item texts, encoded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.config import ModelConfig

DIM = 384
K = 10
BATCH = 256
ADD_BATCH = 64
"""Rows added (then deleted) per timed mutation call."""
BIG_ITEMS = 1_000_000
"""From this size on, calls take seconds: fewer of them are timed."""
NPROBES = (8, 16, 32)
"""IVF settings measured besides ``model.index_nprobe``'s default; a quick run measures the default only."""


def cluster_centres(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    """``n`` unit centres, each a random direction plus one direction common to all (the mean of the
    vectors drawn around them then has a norm of about 0.6, as all-MiniLM-L6-v2 item vectors do)."""
    common = rng.standard_normal(dim, dtype=np.float32)
    own = rng.standard_normal((n, dim), dtype=np.float32)
    c = own / np.linalg.norm(own, axis=1, keepdims=True) + common / np.linalg.norm(common)
    out: np.ndarray = c / np.linalg.norm(c, axis=1, keepdims=True)
    return out


def synthetic(n: int, rng: np.random.Generator, centres: np.ndarray, spread: float = 0.6) -> np.ndarray:
    """``n`` unit vectors, each a random centre plus Gaussian noise (per-dimension sd ``spread/sqrt(d)``:
    with unit centres, an item's cosine to its centre is about 0.86 and to another of its cluster 0.74)."""
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        v = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, centres.shape[1]), dtype=np.float32) * (spread / np.sqrt(centres.shape[1]))
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def timed(fn: Callable[[], Any], *, min_s: float, max_calls: int) -> tuple[float, int]:
    """Best per-call seconds over calls made until ``min_s`` has passed (at least 2, at most ``max_calls``)."""
    fn()  # warm-up
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < 2 or (time.perf_counter() - start < min_s and calls < max_calls):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        calls += 1
    return best, calls


def _pair(ours: Callable[[], Any], raw: Callable[[], Any], n_queries: int, *, min_s: float, max_calls: int) -> dict[str, Any]:
    """Alternate one call of ours and one of raw until ``min_s`` has passed; best call of each.

    Call by call, so that a cold cache, a frequency change or a neighbour's burst falls on both
    sides alike (timing one side after the other let whichever ran first look slower by 20-40 %).
    """
    ours()
    raw()  # warm-up
    t_ours = t_raw = float("inf")
    calls, start = 0, time.perf_counter()
    while calls < 2 or (time.perf_counter() - start < min_s and calls < max_calls):
        t = time.perf_counter()
        ours()
        t_mid = time.perf_counter()
        raw()
        t_end = time.perf_counter()
        t_ours, t_raw, calls = min(t_ours, t_mid - t), min(t_raw, t_end - t_mid), calls + 1
    return {
        "queries_per_s": n_queries / t_ours,
        "faiss_queries_per_s": n_queries / t_raw,
        "overhead_vs_faiss": t_ours / t_raw - 1,
        "ms_per_call": round(1000 * t_ours, 3),
        "faiss_ms_per_call": round(1000 * t_raw, 3),
        "calls": 2 * calls,
    }


class TorchFlat:
    """The bare GPU reference for ``gpu-exact``: one product and ``torch.topk`` over a resident matrix."""

    def __init__(self, vectors: npt.NDArray[np.float32]) -> None:
        import torch

        self._torch = torch
        self._matrix = torch.from_numpy(np.ascontiguousarray(vectors)).to("cuda")

    def search(self, queries: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        q = self._torch.from_numpy(np.ascontiguousarray(queries)).to("cuda")
        scores, rows = self._torch.topk(q @ self._matrix.T, k, dim=1)
        return scores.cpu().numpy(), rows.cpu().numpy()


class Catalog:
    """The item store's side of a candidate index, for one platform: a matrix whose rows never move and
    their liveness (``fusionrec.items.PlatformItems`` without ids and hashes, so only the index is timed).

    ``spare`` rows past the ``n`` items start dead; the mutation timings add and delete them.
    """

    def __init__(self, vectors: npt.NDArray[np.float32], n: int) -> None:
        self.vectors = vectors
        self.alive = np.zeros(len(vectors), bool)
        self.n = n
        self.index: Any = None

    def view(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        return self.vectors, self.alive

    def add(self, rows: npt.NDArray[np.int64]) -> None:
        self.alive[rows] = True
        self.index.add(rows, self.vectors[rows])

    def delete(self, rows: npt.NDArray[np.int64]) -> None:
        self.alive[rows] = False
        self.index.remove(rows)


def build(vectors: npt.NDArray[np.float32], n: int, *, exact_max: int, nprobe: int, device: str) -> tuple[Catalog, Any, float]:
    """A catalog of the first ``n`` rows with its candidate index, and the seconds the index took to take them."""
    from index.candidates import CandidateIndex, IndexSettings

    catalog = Catalog(vectors, n)
    catalog.index = CandidateIndex(DIM, catalog.view, IndexSettings(exact_max=exact_max, nprobe=nprobe, device=device))
    t = time.perf_counter()
    catalog.add(np.arange(n, dtype=np.int64))
    return catalog, catalog.index, time.perf_counter() - t


def mutations(catalog: Catalog, *, min_s: float, max_calls: int) -> dict[str, Any]:
    """Best time to add ``ADD_BATCH`` new rows and to delete them again (the catalog ends as it began)."""
    rows = np.arange(catalog.n, catalog.n + ADD_BATCH, dtype=np.int64)
    t_add = t_delete = float("inf")
    calls, start = 0, time.perf_counter()
    while calls < 2 or (time.perf_counter() - start < min_s and calls < max_calls):
        t = time.perf_counter()
        catalog.add(rows)
        t_mid = time.perf_counter()
        catalog.delete(rows)
        t_end = time.perf_counter()
        t_add, t_delete, calls = min(t_add, t_mid - t), min(t_delete, t_end - t_mid), calls + 1
    return {"add_batch": ADD_BATCH, "add_ms": round(1000 * t_add, 3), "delete_ms": round(1000 * t_delete, 3), "mutation_calls": 2 * calls}


def recall_at_k(got: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean share of each query's true top-``k`` rows found in ``got`` (padding ``-1`` never counts)."""
    hits = [len(set(g[g >= 0].tolist()) & set(t[t >= 0].tolist())) / max(1, int((t >= 0).sum())) for g, t in zip(got, truth)]
    return float(np.mean(hits)) if hits else 0.0


def bench_size(n: int, device: str, rng: np.random.Generator, *, quick: bool, min_s: float | None = None) -> dict[str, Any]:
    import faiss

    centres = cluster_centres(max(16, n // 100), rng)
    vectors = np.empty((n + ADD_BATCH, DIM), np.float32)
    vectors[:n] = synthetic(n, rng, centres)
    vectors[n:] = synthetic(ADD_BATCH, rng, centres)
    queries = synthetic(BATCH, rng, centres)
    big = n >= BIG_ITEMS
    if min_s is None:
        min_s = 0.5 if quick else (4.0 if big else 2.0)
    max_calls = 3 if big else 5000
    n_single = 4 if big else 1

    catalog, exact, build_s = build(vectors, n, exact_max=n + ADD_BATCH, nprobe=ModelConfig().index_nprobe, device=device)
    flat: Any = faiss.IndexFlatIP(DIM)
    flat.add(vectors[:n])
    raw: Any = TorchFlat(vectors[:n]) if device == "cuda" else flat
    result: dict[str, Any] = {"items": n, "kind": exact.kind, "build_s": round(build_s, 3), "reference": type(raw).__name__}
    result["batch"] = _pair(lambda: exact.search(queries, K), lambda: raw.search(queries, K), BATCH, min_s=min_s, max_calls=max_calls)
    result["single"] = _pair(
        lambda: [exact.search(queries[i : i + 1], K) for i in range(n_single)],
        lambda: [raw.search(queries[i : i + 1], K) for i in range(n_single)],
        n_single,
        min_s=min_s,
        max_calls=max_calls,
    )
    scores, truth = exact.search(queries, K)
    raw_scores, _ = flat.search(queries, K)
    # the same top 10 up to near-ties, whose rows float rounding may swap: the same 10 scores, in order
    result["same_results_as_faiss"] = float(np.mean(np.all(np.abs(scores - raw_scores) <= 1e-5, axis=1)))
    result.update(mutations(catalog, min_s=min_s / 4, max_calls=max_calls))
    del raw, flat, catalog, exact
    if device == "cuda":
        result["ivf"] = {"skipped": "on a GPU the candidate index searches exactly at every size (gpu-exact)"}
    else:
        result["ivf"] = ivf_figures(vectors, n, queries, truth, quick=quick, min_s=min_s, max_calls=max_calls, n_single=n_single)
    return result


def ivf_figures(
    vectors: npt.NDArray[np.float32], n: int, queries: npt.NDArray[np.float32], truth: npt.NDArray[np.int64], *, quick: bool, min_s: float, max_calls: int, n_single: int
) -> dict[str, Any]:
    """The IVF kind on the same rows: build, add/delete, and per ``nprobe`` queries/s and recall@10 against ``truth``."""
    default = ModelConfig().index_nprobe
    catalog, ivf, build_s = build(vectors, n, exact_max=0, nprobe=default, device="cpu")
    assert ivf.kind == "ivf", ivf.kind
    out: dict[str, Any] = {"kind": ivf.kind, "build_s": round(build_s, 3), "nlist": int(ivf._ivf.nlist), "nprobe_default": default}
    out.update(mutations(catalog, min_s=min_s / 4, max_calls=max_calls))
    out["settings"] = []
    for nprobe in (default,) if quick else sorted({*NPROBES, default}):
        ivf.settings.nprobe = nprobe  # read at every search
        batch_s, _ = timed(lambda: ivf.search(queries, K), min_s=min_s / 2, max_calls=max_calls)
        single_s, _ = timed(lambda: [ivf.search(queries[i : i + 1], K) for i in range(n_single)], min_s=min_s / 2, max_calls=max_calls)
        _, got = ivf.search(queries, K)
        out["settings"].append(
            {
                "nprobe": nprobe,
                "batch_queries_per_s": BATCH / batch_s,
                "single_queries_per_s": n_single / single_s,
                "ms_per_call": round(1000 * batch_s, 3),
                "recall_at_10": recall_at_k(got, truth),
            }
        )
    at_default = next(s for s in out["settings"] if s["nprobe"] == default)
    out["queries_per_s"], out["recall_at_10"] = at_default["batch_queries_per_s"], at_default["recall_at_10"]
    return out


def bench_index(sizes: Sequence[int], *, device: str = "cpu", quick: bool = False, threads: int = 1, min_s: float | None = None) -> dict[str, Any]:
    """The index section of the bench report (``min_s``: seconds each timing runs for; default by size)."""
    import faiss
    from threadpoolctl import threadpool_limits

    from index.candidates import set_search_threads

    device = "cuda" if device.startswith("cuda") else "cpu"
    set_search_threads(threads)
    rng = np.random.default_rng(7)
    with threadpool_limits(threads):  # the exact search is numpy's BLAS, not faiss' OpenMP
        per_size = [bench_size(n, device, rng, quick=quick, min_s=min_s) for n in sizes]
    # headline: the batched figure at 100k items when measured, else the largest size measured
    head = next((r for r in per_size if r["items"] == 100_000), per_size[-1])
    small = [r for r in per_size if r["items"] <= 100_000] or per_size
    ivf = head["ivf"]
    return {
        "queries_per_s": head["batch"]["queries_per_s"],
        "faiss_queries_per_s": head["batch"]["faiss_queries_per_s"],
        "overhead_vs_faiss": head["batch"]["overhead_vs_faiss"],
        "ivf_queries_per_s": ivf.get("queries_per_s"),
        "ivf_recall_at_10": ivf.get("recall_at_10"),
        "headline": f"{head['items']} items, batches of {BATCH}, k={K}",
        "overhead_vs_faiss_max_batch": max(r["batch"]["overhead_vs_faiss"] for r in small),
        "overhead_vs_faiss_max_single": max(r["single"]["overhead_vs_faiss"] for r in small),
        "sizes": per_size,
        "dim": DIM,
        "k": K,
        "batch": BATCH,
        "threads": threads,
        "faiss_version": getattr(faiss, "__version__", "?"),
        "device": device,
        "index": "index.candidates.CandidateIndex: exact (queries @ vectors.T, row-wise top-k) and IVF (IndexIVFScalarQuantizer, 8-bit)",
        "reference": "exact kind: faiss.IndexFlatIP.search on the same vectors and queries (on a GPU the timing reference is TorchFlat, the bare kernel, and results are still checked against faiss); IVF: recall@10 against the exact kind",
        "vectors": "synthetic unit vectors around n/100 centres sharing a common direction (clustered, like text embeddings; well separated, which suits IVF)",
    }

"""Index: top-10 queries/s of our ItemIndex against raw FAISS on the same vectors (its overhead).

Vectors are synthetic (dim 384, unit norm), drawn around random cluster centres so that an
approximate index has structure to exploit, as real text embeddings do.  Both sides use the same
faiss thread count (``set_search_threads(1)``, the worker's setting).  Batched queries (256 per call)
and single queries are timed; on CPU at 1M items a raw-faiss IVF index is timed too, with its
recall@10 against exact search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

DIM = 384
K = 10
BATCH = 256
APPROX_MIN_ITEMS = 1_000_000


def synthetic(n: int, rng: np.random.Generator, centres: np.ndarray, spread: float = 0.6) -> np.ndarray:
    """``n`` unit vectors, each a random centre plus Gaussian noise (per-dimension sd ``spread/sqrt(d)``)."""
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


def bench_size(n: int, device: str, rng: np.random.Generator, *, quick: bool) -> dict[str, Any]:
    import faiss

    from index.faiss_index import ItemIndex

    centres = rng.standard_normal((max(16, n // 100), DIM), dtype=np.float32)
    vecs = synthetic(n, rng, centres)
    queries = synthetic(BATCH, rng, centres)
    ids = [f"item{i}" for i in range(n)]
    t = time.perf_counter()
    ours = ItemIndex(DIM, device=device)
    ours.upsert(ids, ["p"] * n, vecs)
    build_ours = time.perf_counter() - t
    raw: Any = faiss.IndexFlatIP(DIM)
    if device.startswith("cuda"):
        res = faiss.StandardGpuResources()
        raw = faiss.index_cpu_to_gpu(res, 0, raw)
    raw.add(vecs)
    big = n >= APPROX_MIN_ITEMS and not device.startswith("cuda")
    min_s = 0.5 if quick else (4.0 if big else 2.0)
    max_calls = 3 if big else 5000
    plats, excl = ["p"] * BATCH, [set() for _ in range(BATCH)]
    result: dict[str, Any] = {"items": n, "build_s_ours": round(build_ours, 2)}
    result["batch"] = _pair(
        lambda: ours.search(queries, K, platforms=plats, exclude=excl), lambda: raw.search(queries, K), BATCH, min_s=min_s, max_calls=max_calls
    )
    q1 = queries[:1]
    n_single = 4 if big else 1
    result["single"] = _pair(
        lambda: [ours.search(queries[i : i + 1], K, platforms=["p"]) for i in range(n_single)],
        lambda: [raw.search(queries[i : i + 1], K) for i in range(n_single)],
        n_single,
        min_s=min_s,
        max_calls=max_calls,
    )
    _ = q1
    # same answers: our ids map back to the raw row numbers
    ours_top = ours.search(queries[:32], K, platforms=plats[:32])
    _, raw_top = raw.search(queries[:32], K)
    same = np.mean([[int(i[4:]) for i, _ in o] == list(r) for o, r in zip(ours_top, raw_top)])
    result["same_results_as_faiss"] = float(same)
    if big or (quick and n >= 1000):
        result["approximate"] = approximate(vecs, queries, raw, rng, quick=quick)
    del ours, raw, vecs
    return result


def approximate(vecs: np.ndarray, queries: np.ndarray, exact: Any, rng: np.random.Generator, *, quick: bool) -> dict[str, Any]:
    """Raw faiss IVF-Flat (inner product): queries/s and recall@10 against exact search."""
    import faiss

    n = len(vecs)
    nlist = max(8, int(4 * np.sqrt(n)))  # 4000 lists at 1M
    quantizer = faiss.IndexFlatIP(DIM)
    ivf = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
    train = vecs[rng.choice(n, min(n, 40 * nlist), replace=False)]
    t = time.perf_counter()
    ivf.train(train)
    ivf.add(vecs)
    build = time.perf_counter() - t
    _, truth = exact.search(queries, K)
    out: dict[str, Any] = {"label": "raw faiss approximate (IndexIVFFlat)", "nlist": nlist, "build_s": round(build, 1), "settings": []}
    for nprobe in (8, 32) if not quick else (4,):
        ivf.nprobe = nprobe
        batch_s, _ = timed(lambda: ivf.search(queries, K), min_s=1.0, max_calls=20)
        single_s, _ = timed(lambda: ivf.search(queries[:1], K), min_s=0.5, max_calls=500)
        _, got = ivf.search(queries, K)
        recall = float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth)]))
        out["settings"].append(
            {"nprobe": nprobe, "batch_queries_per_s": BATCH / batch_s, "single_queries_per_s": 1 / single_s, "recall_at_10": recall}
        )
    return out


def bench_index(sizes: Sequence[int], *, device: str = "cpu", quick: bool = False, threads: int = 1) -> dict[str, Any]:
    import faiss

    from index.faiss_index import set_search_threads

    set_search_threads(threads)
    rng = np.random.default_rng(7)
    per_size = [bench_size(n, device, rng, quick=quick) for n in sizes]
    # headline: the batched figure at 100k items when measured, else the largest size measured
    head = next((r for r in per_size if r["items"] == 100_000), per_size[-1])
    small = [r for r in per_size if r["items"] <= 100_000] or per_size
    return {
        "queries_per_s": head["batch"]["queries_per_s"],
        "faiss_queries_per_s": head["batch"]["faiss_queries_per_s"],
        "overhead_vs_faiss": head["batch"]["overhead_vs_faiss"],
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
        "reference": "faiss.IndexFlatIP.search on the same vectors and queries",
        "vectors": "synthetic unit vectors around n/100 random centres (clustered, like real embeddings)",
    }

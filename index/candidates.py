"""Candidate search over one platform's item vectors: exact below a size, IVF above it, GPU when present.

The item store (``fusionrec.items``) owns every item vector once, in one matrix per platform whose rows
never move; this index answers "the ``k`` rows with the largest inner product with each query" for a
whole micro-batch of queries at once, optionally among allowed rows only (e.g. the items nobody has
interacted with yet).  Ids are store rows, so results need no translation.

* **Exact** (up to ``exact_max`` live rows): one BLAS product of the queries with the store's matrix
  and a partial sort per row.  It holds nothing of its own.
* **IVF** (above): ``IndexIVFScalarQuantizer`` (8-bit codes, a quarter of the float32 size) over the
  store rows, trained on the vectors present when the platform first passes ``exact_max`` and again
  whenever it has doubled since; dropped (exact again) as soon as deletes bring the platform back to
  ``exact_max`` live rows, and trained afresh if it passes it again.  Text embeddings share a large common direction (the mean of
  all-MiniLM-L6-v2 item vectors has a norm of ~0.6), which leaves k-means little to separate; the
  index therefore holds ``v − μ`` (μ: the mean at training) and adds ``q · μ`` back to every score, so
  scores and order are those of ``q · v`` (measured on the synthetic 4k-item set: recall@10 against
  exact search 0.43 → 0.68 at 8 probes).  Scores come from the 8-bit codes (about three significant
  digits), close enough for candidates.
* **GPU**: the exact search runs on the device whatever the size, over a copy of the matrix kept
  there (``index/gpu.py``: only changed rows cross; faiss' GPU build is not used).

Measured on this project's 2-core machine (one thread, 256 queries, 384 dimensions): exact costs about
18 µs per query at 2,000 rows and 50 µs at 4,000, IVF about 25 µs at 4,000-8,000 rows with 8 probes
(BENCHMARKS.md has the table).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import faiss
import numpy as np
import numpy.typing as npt

from fusionrec.errors import IndexError_
from fusionrec.topk import exact_top_k

if TYPE_CHECKING:
    from index.gpu import GpuExact

__all__ = ["CandidateIndex", "IndexSettings", "resolve_device", "set_search_threads"]

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def set_search_threads(n: int) -> None:
    """OpenMP threads of faiss (process-wide); one is fastest beside a broker on a small machine."""
    faiss.omp_set_num_threads(n)


def resolve_device(device: str) -> str:
    """``auto|cpu|cuda[:N]`` → ``cpu`` or ``cuda[:N]`` (``cuda`` only when torch sees a GPU)."""
    if device == "cpu":
        return "cpu"
    if device != "auto" and device != "cuda" and not device.startswith("cuda:"):
        raise IndexError_(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N")
    import torch

    if not torch.cuda.is_available():
        if device == "auto":
            return "cpu"
        raise IndexError_(f"device {device!r} asked for, but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return "cuda" if device == "auto" else device


class IndexSettings:
    """When to switch to IVF and how to search it (the defaults are this machine's measurements)."""

    def __init__(self, exact_max: int = 20000, nprobe: int = 16, lists_per_sqrt: float = 2.0, device: str = "cpu") -> None:
        self.exact_max = exact_max
        self.nprobe = nprobe
        self.lists_per_sqrt = lists_per_sqrt
        self.device = device


MatrixView = Callable[[], tuple[Vectors, Mask]]
"""The store's ``(vectors[:n], alive[:n])`` of the platform, as of now."""


class CandidateIndex:
    """Top-``k`` store rows by inner product for a batch of queries (see the module docstring)."""

    def __init__(self, dim: int, view: MatrixView, settings: IndexSettings | None = None) -> None:
        self.dim = dim
        self._view = view
        self.settings = settings or IndexSettings()
        self._ivf: faiss.IndexIVFScalarQuantizer | None = None
        self._mean = np.zeros(dim, np.float32)  # subtracted from every vector the IVF holds
        self._trained_at = 0  # live rows when the IVF was trained
        self._gpu: GpuExact | None = None

    @property
    def on_gpu(self) -> bool:
        return self.settings.device.startswith("cuda")

    @property
    def kind(self) -> str:
        if self.on_gpu:
            return "gpu-exact"
        return "ivf" if self._ivf is not None else "exact"

    # ---------------------------------------------------------------------------- mutation

    def add(self, rows: Rows, vectors: Vectors) -> None:
        """Rows that are new or whose vector changed (the store has already written them)."""
        if self.on_gpu:
            self._device_copy().add(np.asarray(rows, np.int64), vectors)
            return
        if self._ivf is not None and len(rows):
            self._ivf.remove_ids(np.asarray(rows, np.int64))  # a replaced vector must not be found twice
            self._ivf.add_with_ids(np.ascontiguousarray(vectors - self._mean, np.float32), np.asarray(rows, np.int64))
        self._maybe_switch()

    def remove(self, rows: Rows) -> None:
        """Rows the store has just marked dead; a platform shrunk to ``exact_max`` searches exactly again."""
        if self._ivf is not None and len(rows):
            self._ivf.remove_ids(np.asarray(rows, np.int64))
        self._maybe_switch()

    def _maybe_switch(self) -> None:
        if self.on_gpu:
            return
        vectors, alive = self._view()
        live = int(alive.sum())
        if live <= self.settings.exact_max:
            self._ivf = None
        elif self._ivf is None or live > 2 * self._trained_at:
            self._train(vectors, alive)

    def _train(self, vectors: Vectors, alive: Mask) -> None:
        """A fresh IVF over the live rows: ``lists_per_sqrt·√n`` lists, k-means on a sample."""
        rows = np.flatnonzero(alive)
        nlist = max(16, int(self.settings.lists_per_sqrt * np.sqrt(len(rows))))
        mean = vectors[rows].mean(axis=0).astype(np.float32)
        centred = np.ascontiguousarray(vectors[rows] - mean)
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = 10  # the clustering only has to be good enough to route queries
        ivf.cp.max_points_per_centroid = 64
        ivf.cp.seed = 1234
        ivf.train(centred)
        ivf.add_with_ids(centred, rows.astype(np.int64))
        ivf.nprobe = self.settings.nprobe
        self._ivf, self._mean, self._trained_at = ivf, mean, len(rows)
        log.info("candidate index: IVF with %d lists over %d items", nlist, len(rows))

    # ------------------------------------------------------------------------------ search

    def search(
        self, queries: Vectors, k: int, allowed: Mask | None = None, bias: npt.NDArray[np.float32] | None = None, effort: float = 1.0
    ) -> tuple[npt.NDArray[np.float32], Rows]:
        """``(scores, rows)``, each ``(len(queries), k)``, best first; rows -1 (score -inf) pad short lists.

        Dead rows are never returned; with ``allowed`` only rows where it is True are.  ``bias`` (one
        value per row, rows beyond it count 0) is added to every score: the exact search ranks by
        ``q · v + bias``; the IVF ranks by ``q · v`` and returns the biased scores of what it found.
        ``effort`` scales the lists an IVF search visits (a cheaper, rougher search below 1).
        """
        q = np.ascontiguousarray(queries, np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise IndexError_(f"queries must have shape (n, {self.dim}), got {q.shape}")
        vectors, alive = self._view()
        ok = alive if allowed is None else alive & allowed[: len(alive)]
        if k <= 0 or len(q) == 0 or not ok.any():
            return np.full((len(q), max(k, 0)), -np.inf, np.float32), np.full((len(q), max(k, 0)), -1, np.int64)
        if self.on_gpu:
            return self._gpu_search(q, k, vectors, ok, bias)
        if self._ivf is not None:
            return _biased(*self._ivf_search(q, k, ok, allowed is not None, effort), bias)
        scores = q @ vectors.T
        if bias is not None:
            m = min(len(bias), scores.shape[1])
            scores[:, :m] += bias[:m]
        return exact_top_k(scores, k, ok)

    def _ivf_search(self, q: Vectors, k: int, ok: Mask, filtered: bool, effort: float = 1.0) -> tuple[npt.NDArray[np.float32], Rows]:
        assert self._ivf is not None
        params = faiss.SearchParametersIVF(nprobe=max(1, round(self.settings.nprobe * effort)))
        if filtered:
            bits = np.packbits(ok, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(ok), faiss.swig_ptr(bits))
            scores, rows = self._ivf.search(q, k, params=params)
            del bits  # kept alive through the search: the selector points into it
        else:
            scores, rows = self._ivf.search(q, k, params=params)
        scores = np.where(rows >= 0, scores + (q @ self._mean)[:, None], -np.inf).astype(np.float32)
        return scores, rows.astype(np.int64)

    def _device_copy(self) -> GpuExact:
        if self._gpu is None:
            from index.gpu import GpuExact

            self._gpu = GpuExact(self.dim, self.settings.device)
        return self._gpu

    def _gpu_search(
        self, q: Vectors, k: int, vectors: Vectors, ok: Mask, bias: npt.NDArray[np.float32] | None
    ) -> tuple[npt.NDArray[np.float32], Rows]:
        gpu = self._device_copy()
        if gpu.rows < len(vectors):  # rows the store holds that never came through add()
            gpu.add(np.arange(gpu.rows, len(vectors), dtype=np.int64), vectors[gpu.rows :])
        return gpu.search(q, k, ok, bias)


def _biased(scores: npt.NDArray[np.float32], rows: Rows, bias: npt.NDArray[np.float32] | None) -> tuple[npt.NDArray[np.float32], Rows]:
    if bias is None:
        return scores, rows
    known = (rows >= 0) & (rows < len(bias))
    return (scores + np.where(known, bias[np.where(known, rows, 0)], 0.0)).astype(np.float32), rows

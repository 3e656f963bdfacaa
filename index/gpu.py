"""Exact candidate search on a GPU: the platform's vectors resident in device memory, one product per chunk.

Only the rows that change cross to the device (``add``); a search moves the queries, the liveness mask
and the bias there and ``k`` scores and rows per query back.  Scores are float32 products (no TF32), so
they and the order are those of the CPU's exact search up to float rounding.  torch (a CUDA build from
PyPI) does the work: faiss' GPU wheels need CUDA 12 libraries beside torch's CUDA 13 ones, and its
``knn_gpu`` would copy the whole matrix to the device on every search.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["GpuExact"]

Vectors = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

SCORE_ELEMENTS = 1 << 28
"""Scores held at once (1 GiB of float32): queries are searched in chunks of ``SCORE_ELEMENTS // rows``."""


class GpuExact:
    """A growing device copy of one platform's matrix (rows never move) and its exact top-``k``."""

    def __init__(self, dim: int, device: str = "cuda") -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._vectors: Any = torch.zeros((0, dim), dtype=torch.float32, device=self._device)
        self.rows = 0  # rows written so far; the store's rows below this are on the device

    def add(self, rows: Rows, vectors: Vectors) -> None:
        """Rows that are new or whose vector changed."""
        if not len(rows):
            return
        torch = self._torch
        self._reserve(int(np.max(rows)) + 1)
        at = torch.from_numpy(np.ascontiguousarray(rows, np.int64)).to(self._device)
        self._vectors[at] = torch.from_numpy(np.ascontiguousarray(vectors, np.float32)).to(self._device)
        self.rows = max(self.rows, int(np.max(rows)) + 1)

    def _reserve(self, rows: int) -> None:
        capacity = self._vectors.shape[0]
        if rows <= capacity:
            return
        grown = self._torch.zeros((max(rows, 2 * capacity, 1024), self._vectors.shape[1]), dtype=self._vectors.dtype, device=self._device)
        grown[:capacity] = self._vectors
        self._vectors = grown

    def search(self, queries: Vectors, k: int, ok: Mask, bias: npt.NDArray[np.float32] | None) -> tuple[npt.NDArray[np.float32], Rows]:
        """``(scores, rows)`` ranked by ``q · v + bias`` among rows where ``ok``; -inf / -1 pad short lists."""
        torch = self._torch
        n = min(len(ok), self.rows)
        kk = min(k, n)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        out_r = np.full((len(queries), k), -1, np.int64)
        if kk == 0:
            return out_s, out_r
        matrix = self._vectors[:n]
        blocked = ~torch.from_numpy(np.ascontiguousarray(ok[:n])).to(self._device)
        shift = None
        if bias is not None:
            b = np.zeros(n, np.float32)
            m = min(len(bias), n)
            b[:m] = bias[:m]
            shift = torch.from_numpy(b).to(self._device)
        q = torch.from_numpy(np.ascontiguousarray(queries, np.float32)).to(self._device)
        step = max(1, SCORE_ELEMENTS // n)
        for start in range(0, len(q), step):
            scores = q[start : start + step] @ matrix.T
            if shift is not None:
                scores += shift
            scores.masked_fill_(blocked, -torch.inf)
            top_s, top_r = torch.topk(scores, kk, dim=1)
            out_s[start : start + step, :kk] = top_s.cpu().numpy()
            out_r[start : start + step, :kk] = top_r.cpu().numpy()
        out_r[~np.isfinite(out_s)] = -1  # fewer allowed rows than k
        return out_s, out_r

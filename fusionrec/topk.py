"""Row-wise top-k of dense score matrices (the exact candidate search and the new-item block)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["exact_top_k"]

Rows = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def exact_top_k(scores: npt.NDArray[np.float32], k: int, ok: Mask) -> tuple[npt.NDArray[np.float32], Rows]:
    """Row-wise top-``k`` of a dense score matrix over the columns where ``ok``, best first."""
    if not ok.all():
        scores[:, ~ok] = -np.inf
    n = scores.shape[1]
    kk = min(k, n)
    if kk < n:
        cols = np.argpartition(scores, n - kk, axis=1)[:, n - kk :]
    else:
        cols = np.broadcast_to(np.arange(n), scores.shape).copy()
    top = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1).astype(np.int64)
    top = np.take_along_axis(top, order, axis=1)
    cols[~np.isfinite(top)] = -1
    if kk < k:
        pad = k - kk
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
        cols = np.pad(cols, ((0, 0), (0, pad)), constant_values=-1)
    return top.astype(np.float32), cols

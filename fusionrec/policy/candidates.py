"""Cleaning a candidate list before a policy looks at it.

Every policy and the re-ranker filter their input themselves, even when the caller says it already
did: an excluded (already consumed) item must never be published, whatever the caller got wrong.

    >>> keep_mask(["a", "b", "a", "c"], [0.9, float("nan"), 0.5, 0.1], exclude={"c"}).tolist()
    [True, False, False, False]
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["keep_mask", "as_scores", "order_by_score"]


def as_scores(scores: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    """``scores`` as a float64 vector of length ``n`` (float64 so ties and sums do not depend on float32 rounding)."""
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{arr.shape[0]} scores for {n} candidates")
    return arr


def keep_mask(
    items: Sequence[str], scores: npt.ArrayLike, exclude: Collection[str] = frozenset()
) -> npt.NDArray[np.bool_]:
    """Which candidates survive: not excluded, first occurrence of their id, finite score.

    A duplicate id would otherwise fill two slots with one item; a NaN score would make any
    ordering depend on where the NaN sits.
    """
    values = as_scores(scores, len(items))
    keep = np.isfinite(values)
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item in exclude or item in seen:
            keep[i] = False
        seen.add(item)
    return keep


def order_by_score(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Indices by descending score; ties keep input order, so the order is reproducible."""
    return np.argsort(-scores, kind="stable")

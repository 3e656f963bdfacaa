"""The co-occurrence features of a batch of requests, summed by one compiled loop per feature.

Request ``m``'s value of a feature at item ``i`` is ``Σ_l w[m, l] · C[items[m, l], i]`` over its recent
items (``C = base + recent``, both CSR), then ``log1p`` (``scale[i]`` first for the item-kNN feature).
Summed as scipy's sparse product does — per request, in float32, the base rows in item order, then
the recent rows — but in one pass that also applies ``log1p`` and writes where the caller wants it: no
sparse matrix is built, sliced or scattered (those numpy and scipy passes over the product, each a
call with a fixed cost, were most of the feature's time; MovieLens products hold thousands of items
per request).

:func:`feature_sums` writes each request's non-zero sums compactly (``scale`` applied); the caller
takes ``log1p`` of them with numpy, whose vectorised float32 ``log1p`` a compiled loop cannot match in
speed nor to the bit; then :func:`add_sums` adds ``weight ·`` them into dense scores (ranking) or
:func:`gather_sums` reads them at given items (training).  The ``acc`` float32 and ``mark`` bool
scratch of the platform's ``n`` items are all zero / False and are left so; ``touched`` is an int64
scratch of ``n``.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["feature_sums", "add_sums", "gather_sums"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@numba.njit(cache=True, nogil=True)
def _sum_rows(items, weights, m, ptr, idx, val, acc, mark, touched, n_touched):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    for slot in range(items.shape[1]):
        j = items[m, slot]
        if j < 0:
            continue
        w = weights[m, slot]
        for p in range(ptr[j], ptr[j + 1]):
            i = idx[p]
            if not mark[i]:
                mark[i] = True
                touched[n_touched] = i
                n_touched += 1
            acc[i] += w * val[p]
    return n_touched


@numba.njit(cache=True, nogil=True)
def _request(items, weights, m, b_ptr, b_idx, b_val, r_ptr, r_idx, r_val, acc, mark, touched):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    n_touched = _sum_rows(items, weights, m, b_ptr, b_idx, b_val, acc, mark, touched, 0)
    return _sum_rows(items, weights, m, r_ptr, r_idx, r_val, acc, mark, touched, n_touched)


@numba.njit(cache=True, nogil=True)
def feature_sums(items, weights, b_ptr, b_idx, b_val, r_ptr, r_idx, r_val, scale, use_scale, starts, counts, out_idx, out_val, acc, mark, touched):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Request ``m``'s non-zero sums (times ``scale[i]`` with ``use_scale``) as items
    ``out_idx[starts[m] : starts[m] + counts[m]]`` and values ``out_val[...]``; ``starts`` leaves room
    for every item a request's rows hold.  ``items`` ``(M, L)`` rows (-1: none), ``weights`` ``(M, L)``."""
    for m in range(items.shape[0]):
        n_touched = _request(items, weights, m, b_ptr, b_idx, b_val, r_ptr, r_idx, r_val, acc, mark, touched)
        k = starts[m]
        for t in range(n_touched):
            i = touched[t]
            v = acc[i]
            acc[i] = 0.0
            mark[i] = False
            if v == 0.0:  # as the sparse product: no entry
                continue
            if use_scale:
                v = v * scale[i]
            out_idx[k] = i
            out_val[k] = v
            k += 1
        counts[m] = k - starts[m]


@numba.njit(cache=True, nogil=True)
def add_sums(starts, counts, out_idx, out_val, column, weight, scores):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``scores[m, column[i]] += weight · v`` over request ``m``'s entries (``column[i] < 0``: not scored)."""
    for m in range(starts.shape[0]):
        for k in range(starts[m], starts[m] + counts[m]):
            c = column[out_idx[k]]
            if c >= 0:
                scores[m, c] += weight * out_val[k]


@numba.njit(cache=True, nogil=True)
def gather_sums(starts, counts, out_idx, out_val, cols, feature, out, acc, mark):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``out[m, c, feature] =`` request ``m``'s entry at item ``cols[m, c]``, 0 where it has none."""
    n = acc.shape[0]
    for m in range(starts.shape[0]):
        lo, hi = starts[m], starts[m] + counts[m]
        for k in range(lo, hi):
            acc[out_idx[k]] = out_val[k]
            mark[out_idx[k]] = True
        for c in range(cols.shape[1]):
            i = cols[m, c]
            out[m, c, feature] = acc[i] if 0 <= i < n and mark[i] else 0.0
        for k in range(lo, hi):
            acc[out_idx[k]] = 0.0
            mark[out_idx[k]] = False

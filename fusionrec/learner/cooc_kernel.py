"""The co-occurrence features of a batch of requests, summed by one compiled pass over their rows.

Request ``m``'s value of a feature at item ``i`` is ``Σ_l w[m, l] · C[items[m, l], i]`` over its recent
items (``C = base + recent``, both CSR), then ``log1p`` (``scale[i]`` first for the item-kNN feature).
Summed as scipy's sparse product does — per request, in float32, the base rows in item order, then
the recent rows — but in one pass that also applies ``log1p`` and writes where the caller wants it: no
sparse matrix is built, sliced or scattered (those numpy and scipy passes over the product, each a
call with a fixed cost, were most of the feature's time; MovieLens products hold thousands of items
per request).

The last item is one of the window's items and the window is part of the sequence, so
:func:`three_sums` reads each recent item's rows once and adds into the features it feeds (before, a
loop per feature read the window's rows twice and the last item's three times); it writes each
item a request's rows reach once, with its three sums side by side (``scale`` applied); the caller
takes ``log1p`` of them with numpy, whose vectorised float32 ``log1p`` a compiled loop cannot match in
speed nor to the bit; then :func:`add_sums` adds ``weight ·`` them into dense scores (ranking) or
:func:`gather_sums` reads them at given items (training), each in one pass for the three features
(one per feature, with each feature's own list of items, cost 40 % more).  The ``acc`` ``(n, 3)``
float32 scratch and ``mark`` bool scratch of the platform's ``n`` items are all zero / False and
are left so; ``touched`` is an int64 scratch of ``n + 1`` (written one past what it keeps).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["three_sums", "add_sums", "gather_sums"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@numba.njit(cache=True, nogil=True)
def _sum_levels(items, level, w_win, w_knn, m, ptr, idx, val, acc, mark, touched, n_touched):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # No branch depends on the data: half the entries are an item's first touch, in no predictable
    # order, and a mispredicted "first time?" branch per entry cost a third of the pass (700k events of
    # history, 1,800 entries a request: 14.9 -> 9.4 µs); the feature level is fixed per row, so each
    # level gets its own loop.
    for slot in range(items.shape[1]):
        j = items[m, slot]
        if j < 0:
            continue
        lv = level[m, slot]
        wk = w_knn[m, slot]
        ww = w_win[m, slot]
        lo, hi = ptr[j], ptr[j + 1]
        if lv == 0:
            for p in range(lo, hi):
                i = idx[p]
                touched[n_touched] = i  # kept only if new: the count moves past it then
                n_touched += not mark[i]
                mark[i] = True
                acc[i, 2] += wk * val[p]
        elif lv == 1:
            for p in range(lo, hi):
                i = idx[p]
                touched[n_touched] = i
                n_touched += not mark[i]
                mark[i] = True
                v = val[p]
                acc[i, 2] += wk * v
                acc[i, 1] += ww * v
        else:
            for p in range(lo, hi):
                i = idx[p]
                touched[n_touched] = i
                n_touched += not mark[i]
                mark[i] = True
                v = val[p]
                acc[i, 2] += wk * v
                acc[i, 1] += ww * v
                acc[i, 0] += v  # the last item's weight is 1
    return n_touched


@numba.njit(cache=True, nogil=True)
def three_sums(items, level, w_win, w_knn, b_ptr, b_idx, b_val, r_ptr, r_idx, r_val, scale, starts, counts, out_idx, out_val, acc, mark, touched):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The three features (last item, window, item-kNN) in one pass over the rows: ``items`` ``(M, L)`` are a
    request's recent items in increasing row order (-1: none), ``level`` says which features an item
    feeds (0: the whole sequence, 1: and the window, 2: and the last item), ``w_win``/``w_knn`` its
    weights in those.  Each feature still sums its own items in the same order, to the same bits.
    Request ``m``'s entries go to ``out_idx``/``out_val`` from ``starts[m]`` on, ``counts[m]`` of them,
    each request's right after the previous one's (the arrays must hold every entry that the rows could
    reach); returns how many were written in all.  An entry is an item the request's rows reach, once,
    with its three sums (``out_val[k]``: last, window, knn × ``scale``; 0 where a feature's items do not
    reach it); ``acc`` is ``(n, 3)`` scratch (zero, left so)."""
    k = 0
    for m in range(items.shape[0]):
        n_touched = _sum_levels(items, level, w_win, w_knn, m, b_ptr, b_idx, b_val, acc, mark, touched, 0)
        n_touched = _sum_levels(items, level, w_win, w_knn, m, r_ptr, r_idx, r_val, acc, mark, touched, n_touched)
        starts[m] = k
        for t in range(n_touched):
            i = touched[t]
            mark[i] = False
            out_idx[k] = i
            out_val[k, 0] = acc[i, 0]
            out_val[k, 1] = acc[i, 1]
            v = acc[i, 2]
            out_val[k, 2] = v * scale[i] if v != 0.0 else 0.0  # as the sparse product (scale may be inf where nothing counts)
            acc[i, 0] = 0.0
            acc[i, 1] = 0.0
            acc[i, 2] = 0.0
            k += 1
        counts[m] = n_touched
    return k


@numba.njit(cache=True, nogil=True)
def add_sums(starts, counts, out_idx, out_val, column, weight, scores):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``scores[m, column[i]] += weight[f] · v_f`` over request ``m``'s entries, feature after feature
    (``column[i] < 0``: not scored).  A feature's 0 adds nothing: ``s + w·0 == s``."""
    w0, w1, w2 = weight[0], weight[1], weight[2]
    for m in range(starts.shape[0]):
        for k in range(starts[m], starts[m] + counts[m]):
            c = column[out_idx[k]]
            if c >= 0:
                s = scores[m, c]
                s += w0 * out_val[k, 0]
                s += w1 * out_val[k, 1]
                s += w2 * out_val[k, 2]
                scores[m, c] = s


@numba.njit(cache=True, nogil=True)
def gather_sums(starts, counts, out_idx, out_val, cols, out, acc):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``out[m, c, f] =`` request ``m``'s value of feature ``f`` at item ``cols[m, c]``, 0 where it has none;
    ``acc`` is ``(n, 3)`` scratch (zero, left so).  An item without an entry reads acc's 0: no test of
    whether it has one (the sampled items are in no order a branch could predict)."""
    n = acc.shape[0]
    for m in range(starts.shape[0]):
        lo, hi = starts[m], starts[m] + counts[m]
        for k in range(lo, hi):
            i = out_idx[k]
            acc[i, 0], acc[i, 1], acc[i, 2] = out_val[k, 0], out_val[k, 1], out_val[k, 2]
        for c in range(cols.shape[1]):
            i = cols[m, c]
            if 0 <= i < n:
                out[m, c, 0], out[m, c, 1], out[m, c, 2] = acc[i, 0], acc[i, 1], acc[i, 2]
        for k in range(lo, hi):
            i = out_idx[k]
            acc[i, 0] = acc[i, 1] = acc[i, 2] = 0.0

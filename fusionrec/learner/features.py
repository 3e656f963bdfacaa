"""Feature computation shared by ranking and training, vectorised over a batch of requests.

Co-occurrence features read rows of the published co-occurrence matrix for each request's recent
items of the target platform (``seqs``, rows, oldest first): ``H @ C``, where ``H`` holds the weights of
the last item, of the recent window and of the whole sequence.  The exact search and training sum it
by the compiled loops of :mod:`~fusionrec.learner.cooc_kernel` (:func:`add_cooc_scores`,
:func:`features_at`); the IVF path, which needs each request's best co-occurring items as a sparse
matrix, and the exhaustive reference take the sparse product (:func:`cooc_scores`).  Both give the
same feature values, to the bit.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from fusionrec.learner import cooc_kernel
from fusionrec.learner.model import (
    COOC_KNN,
    COOC_LAST,
    COOC_WINDOW,
    COS_FUSED,
    COS_LAST,
    COS_OWN,
    N_FEATURES,
    NEW,
    NEW_FUSED,
    NEW_LAST,
    POP_LONG,
    SEQ,
    POP_SHORT,
    PlatformModel,
)
from fusionrec.learner.sequence import id_term

__all__ = ["SEQ_FEATURE", "KNN_HISTORY", "seq_weights", "cooc_scores", "add_cooc_scores", "top_per_row", "features_at"]

SEQ_FEATURE = 10
"""Recent items whose co-occurrence rows feed the window feature."""
KNN_HISTORY = 20
"""Recent items whose co-occurrence rows feed the item-kNN feature (the whole sequence)."""

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def _newest_known(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> I64:
    """``(M, KNN_HISTORY)``: each request's newest items first, -1 where it has fewer or the published
    model does not know the row yet."""
    pad = np.full((len(seqs), KNN_HISTORY), -1, np.int64)
    tails = [seq[: -KNN_HISTORY - 1 : -1] for seq in seqs]
    lengths = np.fromiter(map(len, tails), np.int64, len(tails))
    # one masked assignment for the batch (row-major, as the flat list runs): not one per request
    pad[np.arange(KNN_HISTORY) < lengths[:, None]] = np.fromiter(itertools.chain.from_iterable(tails), np.int64, int(lengths.sum()))
    pad[pad >= model.n] = -1
    return pad


def seq_weights(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> sp.csr_matrix:
    """``(3M, n)``: rows ``[0, M)`` pick the last item, ``[M, 2M)`` weigh the window (``1/(k+1)/√n_j``),
    ``[2M, 3M)`` the whole sequence (``1/√n_j``); ``k`` counts back from the newest item."""
    m = len(seqs)
    pad = _newest_known(model, seqs)
    ok = pad >= 0
    b, k = np.nonzero(ok)
    j = pad[b, k]
    norm = model.src_norm[j]
    last = k == 0
    window = k < SEQ_FEATURE
    rows = np.concatenate([b[last], m + b[window], 2 * m + b])
    cols = np.concatenate([j[last], j[window], j])
    vals = np.concatenate([np.ones(int(last.sum()), np.float32), norm[window] / (k[window] + 1).astype(np.float32), norm])
    return sp.csr_matrix((vals, (rows, cols)), shape=(3 * m, model.n), dtype=np.float32)


def _feature_parts(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> Iterator[tuple[int, I64, I64, F32]]:
    """Per co-occurrence feature (last, window, knn): ``(feature, indptr, columns, values)`` of its
    ``(M, n)`` CSR block, ``log1p`` already applied (``knn`` normalised by ``1/√c_i`` first); one sparse
    product for the three, read in place rather than sliced into matrices."""
    m = len(seqs)
    f = model.cooc_times(seq_weights(model, seqs))
    for feature, lo in ((COOC_LAST, 0), (COOC_WINDOW, m), (COOC_KNN, 2 * m)):
        indptr = f.indptr[lo : lo + m + 1]
        start, stop = indptr[0], indptr[-1]
        cols = f.indices[start:stop]
        values = f.data[start:stop].astype(np.float32)
        if feature == COOC_KNN:
            values *= model.inv_count[cols]
        np.log1p(values, out=values)
        yield feature, indptr - start, cols, values


def _blocks(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """``(last, window, knn)`` co-occurrence sums, each ``(M, n)`` sparse, ``log1p`` already applied."""
    shape = (len(seqs), model.n)
    last, window, knn = (sp.csr_matrix((v, c, p), shape=shape) for _, p, c, v in _feature_parts(model, seqs))
    return last, window, knn


def cooc_scores(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> sp.csr_matrix:
    """``(M, n)`` sparse: the weighted sum of the three co-occurrence features of every item that
    co-occurs with the sequence (zero elsewhere)."""
    w = model.weights
    last, window, knn = _blocks(model, seqs)
    return (np.float32(w[COOC_LAST]) * last + np.float32(w[COOC_WINDOW]) * window + np.float32(w[COOC_KNN]) * knn).tocsr()


def add_cooc_scores(model: PlatformModel, seqs: Sequence[Sequence[int]], scores: F32, column: I64) -> None:
    """``scores[r, column[i]] +=`` what :func:`cooc_scores` gives request ``r`` and item ``i`` (items whose
    ``column`` is -1 are skipped), feature by feature, by the compiled loop of
    :mod:`~fusionrec.learner.cooc_kernel`: no sparse product is built (building, slicing and scattering
    it cost more than the sums)."""
    weight = model.weights[[COOC_LAST, COOC_WINDOW, COOC_KNN]].astype(np.float32)
    cooc_kernel.add_sums(*_sums(model, seqs), column, weight, scores)


def top_per_row(m: sp.csr_matrix, k: int) -> tuple[F32, I64]:
    """The ``k`` largest stored entries of every row: ``(values, columns)``, each ``(rows, k)``,
    unordered, padded with ``-inf`` / ``-1``."""
    rows = m.shape[0]
    lengths = np.diff(m.indptr)
    width = max(int(lengths.max(initial=0)), 1)
    values = np.full((rows, width), -np.inf, np.float32)
    cols = np.full((rows, width), -1, np.int64)
    r = np.repeat(np.arange(rows), lengths)
    pos = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    values[r, pos] = m.data
    cols[r, pos] = m.indices
    if width > k:
        keep = np.argpartition(values, width - k, axis=1)[:, width - k :]
        values = np.take_along_axis(values, keep, axis=1)
        cols = np.take_along_axis(cols, keep, axis=1)
    elif width < k:
        values = np.pad(values, ((0, 0), (0, k - width)), constant_values=-np.inf)
        cols = np.pad(cols, ((0, 0), (0, k - width)), constant_values=-1)
    cols[~np.isfinite(values)] = -1
    return values, cols


def _gather_cooc(model: PlatformModel, seqs: Sequence[Sequence[int]], cols: I64, f: npt.NDArray[np.float64]) -> None:
    """``f[r, c, feature] =`` the co-occurrence feature of request ``r`` at item ``cols[r, c]`` (0 where
    none), by the compiled loop of :mod:`~fusionrec.learner.cooc_kernel`."""
    out = np.zeros((*cols.shape, 3), np.float32)
    acc = np.zeros((max(model.n, 1), 3), np.float32)
    cols = np.ascontiguousarray(cols)  # one layout, one compiled variant (tiny concatenations come out in F order)
    cooc_kernel.gather_sums(*_sums(model, seqs), cols, out, acc)
    f[:, :, [COOC_LAST, COOC_WINDOW, COOC_KNN]] = out


def _sums(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> tuple[I64, I64, I64, F32]:
    """``(starts, counts, items, log1p values)`` of every request's entries: each item its recent items'
    rows reach, once, with its ``(last, window, knn)`` features side by side (0 for a feature whose items
    do not reach it) — the three summed in one compiled pass over the rows, then numpy's ``log1p``
    over every value at once."""
    items, level, w_win, w_knn = _feature_inputs(model, seqs)
    b_ptr, _, _, r_ptr, _, _ = parts = model.cooc_parts
    at = np.maximum(items, 0)
    held = np.where(items >= 0, b_ptr[at + 1] - b_ptr[at] + r_ptr[at + 1] - r_ptr[at], 0)
    room = int(np.minimum(held.sum(axis=1), model.n).sum())  # each request reaches at most every item once
    idx, values = np.empty(room, np.int64), np.empty((room, 3), np.float32)
    starts, counts = np.zeros(len(items), np.int64), np.zeros(len(items), np.int64)
    acc = np.zeros((max(model.n, 1), 3), np.float32)
    mark, touched = np.zeros(max(model.n, 1), bool), np.empty(max(model.n, 1) + 1, np.int64)  # + 1: the kernel writes one past the items it keeps
    used = cooc_kernel.three_sums(items, level, w_win, w_knn, *parts, model.inv_count, starts, counts, idx, values, acc, mark, touched)
    idx, values = idx[:used], values[:used]
    np.log1p(values, out=values)
    return starts, counts, idx, values


def _feature_inputs(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> tuple[I64, I64, F32, F32]:
    """``(items, level, window weights, knn weights)``, each ``(M, KNN_HISTORY)``: every request's recent
    items in increasing row order (-1 pads last), as the sparse product summed them — the same float32
    sums, to the bit.  ``level`` 2 is the last item (weight 1 in its feature), 1 the rest of the window
    (weights ``1/(k+1)/√n_j``), 0 the rest of the sequence; every item feeds the item-kNN feature with
    ``1/√n_j``, whose sums are scaled by ``1/√c_i`` (``model.inv_count``) — the rows of
    :func:`seq_weights`, as arrays (``k`` counts back from the newest item)."""
    pad = _newest_known(model, seqs)
    norm = np.where(pad >= 0, model.src_norm[np.maximum(pad, 0)] if model.n else np.float32(0.0), np.float32(0.0)).astype(np.float32)
    window = np.zeros_like(norm)
    window[:, :SEQ_FEATURE] = norm[:, :SEQ_FEATURE] / np.arange(1, SEQ_FEATURE + 1, dtype=np.float32)
    k = np.broadcast_to(np.arange(pad.shape[1]), pad.shape)
    level = (k < SEQ_FEATURE).astype(np.int64) + (k == 0)
    order = np.argsort(np.where(pad >= 0, pad, np.iinfo(np.int64).max), axis=1, kind="stable")
    return tuple(np.ascontiguousarray(np.take_along_axis(a, order, axis=1)) for a in (pad, level, window, norm))  # type: ignore[return-value]


def features_at(
    model: PlatformModel,
    vectors: F32,
    fused: F32,
    own: F32,
    last: F32,
    seqs: Sequence[Sequence[int]],
    positives: I64,
    negatives: I64,
    seq: F32 | None = None,
    seq_ids: F32 | None = None,
    seq_hidden: F32 | None = None,
) -> npt.NDArray[np.float64]:
    """``(M, 1+S, F)`` features for training: of example ``m``'s chosen row ``positives[m]`` first, then
    of the ``S`` shared sampled rows.  ``vectors`` is the platform's item matrix; ``fused``/``own``/
    ``last`` are ``(M, d)`` (zeros where absent), and so is ``seq``, the sequence model's queries
    (``None``: no model, the feature is 0); ``seq_ids`` and ``seq_hidden`` ``(M, h)``, for a network whose
    ID embeddings score too, add their part (:func:`~fusionrec.learner.sequence.id_term`)."""
    m, s = len(positives), len(negatives)
    cols = np.concatenate([positives[:, None], np.broadcast_to(negatives, (m, s))], axis=1)
    f = np.zeros((m, 1 + s, N_FEATURES), np.float64)
    pos_v = vectors[positives]  # (M, d)
    neg_v = vectors[negatives]  # (S, d)
    for j, q in ((COS_FUSED, fused), (COS_OWN, own), (COS_LAST, last), (SEQ, seq)):
        if q is None:
            continue
        f[:, 0, j] = np.einsum("md,md->m", pos_v, q)
        f[:, 1:, j] = q @ neg_v.T
    if seq is not None and seq_ids is not None and seq_hidden is not None:
        f[:, :, SEQ] += id_term(seq_ids, seq_hidden, cols)
    if any(seqs):
        _gather_cooc(model, seqs, cols, f)
    f[:, :, POP_SHORT] = model.pop[0, cols]
    f[:, :, POP_LONG] = model.pop[1, cols]
    new = model.new[cols].astype(np.float64)
    f[:, :, NEW] = new
    f[:, :, NEW_FUSED] = new * f[:, :, COS_FUSED]
    f[:, :, NEW_LAST] = new * f[:, :, COS_LAST]
    return f

"""Feature computation shared by ranking and training, vectorised over a batch of requests.

Co-occurrence features read rows of the published co-occurrence matrix for each request's recent
items of the target platform (``seqs``, rows, oldest first): one sparse product ``H @ C`` per batch,
where ``H`` holds the weights of the last item, of the recent window and of the whole sequence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

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
    POP_SHORT,
    PlatformModel,
)

__all__ = ["SEQ_FEATURE", "KNN_HISTORY", "seq_weights", "cooc_scores", "add_cooc_scores", "top_per_row", "features_at"]

SEQ_FEATURE = 10
"""Recent items whose co-occurrence rows feed the window feature."""
KNN_HISTORY = 20
"""Recent items whose co-occurrence rows feed the item-kNN feature (the whole sequence)."""

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def seq_weights(model: PlatformModel, seqs: Sequence[Sequence[int]]) -> sp.csr_matrix:
    """``(3M, n)``: rows ``[0, M)`` pick the last item, ``[M, 2M)`` weigh the window (``1/(k+1)/√n_j``),
    ``[2M, 3M)`` the whole sequence (``1/√n_j``); ``k`` counts back from the newest item."""
    m = len(seqs)
    pad = np.full((m, KNN_HISTORY), -1, np.int64)
    for b, seq in enumerate(seqs):
        if seq:
            tail = seq[-KNN_HISTORY:][::-1]
            pad[b, : len(tail)] = tail
    ok = (pad >= 0) & (pad < model.n)
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
    ``column`` is -1 are skipped), scattered feature by feature straight into the dense block: no summed
    sparse matrix is built (its additions cost more than the product)."""
    w = model.weights
    flat = scores.view()
    flat.shape = (-1,)  # a view (raises if ``scores`` is not contiguous): one flat index costs less than a (row, column) pair
    width = scores.shape[1]
    for feature, indptr, cols, values in _feature_parts(model, seqs):
        at = column[cols]
        ok = at >= 0
        at += np.repeat(np.arange(0, width * (len(indptr) - 1), width), np.diff(indptr))
        flat[at[ok]] += np.float32(w[feature]) * values[ok]  # (request, item) unique per feature


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
    none): each feature's part scattered into one dense ``(M, n)`` scratch and read back at ``cols``,
    which costs less than building a sparse matrix per feature and searching it."""
    m = len(seqs)
    scratch = np.zeros(m * model.n, np.float32)
    valid = (cols >= 0) & (cols < model.n)
    want = (np.arange(m, dtype=np.int64) * model.n)[:, None] + np.where(valid, cols, 0)
    for feature, indptr, columns, values in _feature_parts(model, seqs):
        at = np.repeat(np.arange(0, m * model.n, model.n), np.diff(indptr)) + columns
        scratch[at] = values  # (request, item) unique per feature
        f[:, :, feature] = np.where(valid, scratch[want], 0.0)
        scratch[at] = 0.0


def features_at(
    model: PlatformModel,
    vectors: F32,
    fused: F32,
    own: F32,
    last: F32,
    seqs: Sequence[Sequence[int]],
    positives: I64,
    negatives: I64,
) -> npt.NDArray[np.float64]:
    """``(M, 1+S, F)`` features for training: of example ``m``'s chosen row ``positives[m]`` first, then
    of the ``S`` shared sampled rows.  ``vectors`` is the platform's item matrix; ``fused``/``own``/
    ``last`` are ``(M, d)`` (zeros where absent)."""
    m, s = len(positives), len(negatives)
    cols = np.concatenate([positives[:, None], np.broadcast_to(negatives, (m, s))], axis=1)
    f = np.zeros((m, 1 + s, N_FEATURES), np.float64)
    pos_v = vectors[positives]  # (M, d)
    neg_v = vectors[negatives]  # (S, d)
    for j, q in ((COS_FUSED, fused), (COS_OWN, own), (COS_LAST, last)):
        f[:, 0, j] = np.einsum("md,md->m", pos_v, q)
        f[:, 1:, j] = q @ neg_v.T
    if any(seqs):
        _gather_cooc(model, seqs, cols, f)
    f[:, :, POP_SHORT] = model.pop[0, cols]
    f[:, :, POP_LONG] = model.pop[1, cols]
    new = model.new[cols].astype(np.float64)
    f[:, :, NEW] = new
    f[:, :, NEW_FUSED] = new * f[:, :, COS_FUSED]
    f[:, :, NEW_LAST] = new * f[:, :, COS_LAST]
    return f

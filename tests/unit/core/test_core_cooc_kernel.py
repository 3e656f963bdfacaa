"""The compiled co-occurrence sums (``fusionrec.learner.cooc_kernel``, used by ``learner.features``) give
the sparse product's features to the bit: the same float32 sums, the same ``log1p``, the same entries
(none where a sum is 0), on random matrices with a recent part or without, sequences with items the
published model does not know yet, and empty ones; and, compiled with bounds checks, on rows that reach
every item more than once (the pass writes its scratch one past the items it keeps)."""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.learner import cooc_kernel
from fusionrec.learner.features import _feature_parts, _sums, add_cooc_scores, features_at
from fusionrec.learner.model import COOC_KNN, COOC_LAST, COOC_WINDOW, N_FEATURES, PlatformModel


def random_csr(rng: np.random.Generator, n: int, density: float) -> sp.csr_matrix:
    m = sp.random(n, n, density=density, random_state=rng, format="csr", dtype=np.float32)
    m.data = np.round(m.data * 8).astype(np.float32) / np.float32(4)  # some exact zeros, some cancelling sums
    return m


def model_of(rng: np.random.Generator, n: int, density: float, with_recent: bool) -> PlatformModel:
    weights = rng.normal(size=N_FEATURES)
    counts = rng.integers(0, 5, n).astype(np.float64)
    return PlatformModel(
        weights=weights,
        n=n,
        pop=np.zeros((2, n), np.float32),
        inv_count=(1.0 / np.sqrt(np.maximum(counts, 1.0))).astype(np.float32),
        src_norm=rng.uniform(0.1, 1.0, n).astype(np.float32),
        new=np.zeros(n, bool),
        pop_score=np.zeros(n, np.float32),
        popular=np.zeros(0, np.int64),
        cooc_base=random_csr(rng, n, density),
        cooc_recent=random_csr(rng, n, density / 3) if with_recent else sp.csr_matrix((n, n), dtype=np.float32),
    )


def dense(m: int, n: int, indptr: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros((m, n), np.float32)
    for r in range(m):
        out[r, cols[indptr[r] : indptr[r + 1]]] = values[indptr[r] : indptr[r + 1]]
    return out


cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.integers(1, 60),
    st.sampled_from([0.02, 0.1, 0.4]),
    st.booleans(),
    st.lists(st.lists(st.integers(0, 70), max_size=25), min_size=1, max_size=8),
)


@settings(max_examples=60, deadline=None)
@given(cases)
def test_compiled_sums_equal_the_sparse_products_to_the_bit(case: tuple[int, int, float, bool, list[list[int]]]) -> None:
    seed, n, density, with_recent, raw = case
    rng = np.random.default_rng(seed)
    model = model_of(rng, n, density, with_recent)
    seqs = [list(dict.fromkeys(s)) for s in raw]  # a person's sequence holds an item once; rows >= n are unknown to the model
    m = len(seqs)
    want = {feature: dense(m, n, indptr, cols, values) for feature, indptr, cols, values in _feature_parts(model, seqs)}
    starts, counts, idx, values = _sums(model, seqs)
    got = {feature: np.zeros((m, n), np.float32) for feature in (COOC_LAST, COOC_WINDOW, COOC_KNN)}
    for r in range(m):
        entries = slice(starts[r], starts[r] + counts[r])
        assert len(set(idx[entries].tolist())) == counts[r]  # an item once per request
        for f, feature in enumerate((COOC_LAST, COOC_WINDOW, COOC_KNN)):
            got[feature][r, idx[entries]] = values[entries, f]
    assert set(got) == set(want) == {COOC_LAST, COOC_WINDOW, COOC_KNN}
    for feature in want:
        np.testing.assert_array_equal(got[feature], want[feature])


def test_rows_that_reach_every_item_twice_stay_in_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense rows: the first item's row reaches all ``n`` items, so every later entry is a repeat and
    the branch-free pass writes its ``touched`` scratch at index ``n``; compiled with bounds checks, a
    scratch one short raises instead of writing past its end."""
    monkeypatch.setattr(cooc_kernel, "_sum_levels", numba.njit(boundscheck=True)(cooc_kernel._sum_levels.py_func))
    monkeypatch.setattr(cooc_kernel, "three_sums", numba.njit(boundscheck=True)(cooc_kernel.three_sums.py_func))
    full = sp.csr_matrix(np.full((6, 6), 0.5, np.float32))
    model = dataclasses.replace(model_of(np.random.default_rng(7), 6, 0.1, True), cooc_base=full, cooc_recent=full)
    seqs = [[0, 1, 2, 3, 4, 5], [2, 4]]
    want = {feature: dense(2, 6, indptr, cols, values) for feature, indptr, cols, values in _feature_parts(model, seqs)}
    starts, counts, idx, values = _sums(model, seqs)
    assert counts.tolist() == [6, 6]
    for f, feature in enumerate((COOC_LAST, COOC_WINDOW, COOC_KNN)):
        got = np.zeros((2, 6), np.float32)
        for r in range(2):
            got[r, idx[starts[r] : starts[r] + counts[r]]] = values[starts[r] : starts[r] + counts[r], f]
        np.testing.assert_array_equal(got, want[feature])


@settings(max_examples=30, deadline=None)
@given(cases)
def test_ranking_and_training_read_the_same_features(case: tuple[int, int, float, bool, list[list[int]]]) -> None:
    """What ``add_cooc_scores`` adds to a block is ``Σ w_f · f``, and ``features_at`` reads each ``f`` at
    the asked items; both from the compiled sums."""
    seed, n, density, with_recent, raw = case
    rng = np.random.default_rng(seed)
    model = model_of(rng, n, density, with_recent)
    seqs = [list(dict.fromkeys(s)) for s in raw]
    m = len(seqs)
    column = np.arange(n, dtype=np.int64)
    column[rng.random(n) < 0.2] = -1  # items scored elsewhere keep their score
    scores = rng.normal(size=(m, n)).astype(np.float32)
    before = scores.copy()
    add_cooc_scores(model, seqs, scores, column)
    cols = np.tile(np.arange(n, dtype=np.int64), (m, 1))
    vectors = np.zeros((n, 4), np.float32)
    zeros = np.zeros((m, 4), np.float32)
    f = features_at(model, vectors, zeros, zeros, zeros, seqs, cols[:, 0], np.arange(1, n, dtype=np.int64))
    w = model.weights.astype(np.float32)
    expect = before.copy()
    for feature in (COOC_LAST, COOC_WINDOW, COOC_KNN):
        expect += np.where(column[None, :] >= 0, w[feature] * f[:, :, feature].astype(np.float32), np.float32(0.0))
    np.testing.assert_allclose(scores, expect, rtol=1e-5, atol=1e-6)
    assert np.array_equal(scores[:, column < 0], before[:, column < 0])

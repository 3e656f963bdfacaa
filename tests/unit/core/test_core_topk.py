"""``fusionrec.topk.exact_top_k``: on wide rows (the compiled selection) and narrow ones (numpy), the
result is a row-wise stable argsort of the allowed scores, cut at ``k`` and padded with -inf / -1 past
the finite ones; equal scores go to the lower column on wide rows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.topk import COMPILED_MIN_RATIO, _select_smallest, exact_top_k


def reference(scores: np.ndarray, k: int, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b, n = scores.shape
    masked = np.where(ok[None, :], scores, -np.inf).astype(np.float32)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    top = np.full((b, k), -np.inf, np.float32)
    cols = np.full((b, k), -1, np.int64)
    kk = min(k, n)
    top[:, :kk] = np.take_along_axis(masked, order, axis=1)
    cols[:, :kk] = np.where(np.isfinite(top[:, :kk]), order, -1)
    return top, cols


def draw_scores(rng: np.random.Generator, b: int, n: int, levels: int, dead: float) -> np.ndarray:
    """Continuous scores, or few distinct levels (many ties); a share of -inf (masked items)."""
    if levels:
        scores = rng.integers(-levels, levels, (b, n)).astype(np.float32) / np.float32(4)
    else:
        scores = rng.normal(size=(b, n)).astype(np.float32)
    scores[rng.random((b, n)) < dead] = -np.inf
    return scores


@settings(max_examples=150, deadline=None)
@given(
    b=st.integers(1, 6),
    k=st.integers(1, 40),
    width=st.integers(1, 60),
    levels=st.sampled_from([0, 0, 3, 50]),
    dead=st.sampled_from([0.0, 0.0, 0.3, 0.97, 1.0]),
    allowed=st.sampled_from([1.0, 0.5, 0.02]),
    seed=st.integers(0, 2**31),
)
def test_exact_top_k_is_a_stable_argsort_cut_at_k(b: int, k: int, width: int, levels: int, dead: float, allowed: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = width * k  # below and above COMPILED_MIN_RATIO · k
    scores = draw_scores(rng, b, n, levels, dead)
    ok = rng.random(n) < allowed
    want_top, want_cols = reference(scores, k, ok)
    top, cols = exact_top_k(scores.copy(), k, ok)
    if n >= COMPILED_MIN_RATIO * k:
        np.testing.assert_array_equal(cols, want_cols)
    else:  # numpy's partition leaves the order among equal scores unspecified
        for r in range(b):
            finite = want_cols[r] >= 0
            assert (cols[r] >= 0).tolist() == finite.tolist()
            assert set(cols[r][finite].tolist()) <= set(np.flatnonzero(ok & (scores[r] >= want_top[r][finite].min(initial=np.inf))).tolist())
    np.testing.assert_array_equal(top, want_top)
    assert top.dtype == np.float32 and cols.dtype == np.int64 and top.shape == cols.shape == (b, k)


def test_a_row_whose_first_threshold_keeps_too_few_is_passed_again() -> None:
    """Only the sampled columns score: the sample's threshold keeps 4 columns of the 10 wanted."""
    k, n = 10, 4000
    stride = n // (2 * k)
    scores = np.zeros((2, n), np.float32)
    sampled = np.arange(0, n, stride)
    scores[:, sampled] = np.arange(100, 100 + len(sampled), dtype=np.float32)
    scores[1, sampled] *= -1  # the same with negative scores
    top, cols = exact_top_k(scores.copy(), k, np.ones(n, bool))
    assert cols[0].tolist() == sampled[::-1][:k].tolist()
    assert cols[1].tolist() == [c for c in range(n) if c % stride][:k]  # the zeros, lowest columns first
    np.testing.assert_array_equal(top[0], scores[0, sampled[::-1][:k]])


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=300, unique=True), data=st.data())
def test_the_selection_puts_the_smallest_keys_first_and_keeps_every_key(values: list[int], data: st.DataObject) -> None:
    c = len(values)
    kk = data.draw(st.integers(1, c))
    a = np.array(values + [7, 7], np.int64)  # slots past c are not touched
    _select_smallest(a, c, kk)
    assert sorted(a[:kk].tolist()) == sorted(values)[:kk]
    assert sorted(a[:c].tolist()) == sorted(values) and a[c:].tolist() == [7, 7]

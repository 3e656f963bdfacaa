"""MMR + novelty re-rank: λ=1 is the relevance order, diversity and novelty move what they should."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.policy.rerank import mmr_order, novelty_penalty, rerank


def unit(n: int, d: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.floats(-1, 1, allow_nan=False).map(lambda x: round(x, 2)), min_size=1, max_size=40),
    k=st.integers(0, 45),
    seed=st.integers(0, 1000),
)
def test_lambda_one_is_pure_relevance_order(scores: list[float], k: int, seed: int) -> None:
    vecs = unit(len(scores), 8, seed)
    order = mmr_order(scores, vecs, k, lam=1.0)
    expected = np.argsort(-np.array(scores), kind="stable")[:k]
    assert order.tolist() == expected.tolist()


def test_lambda_just_below_one_matches_the_loop_path_on_distinct_scores() -> None:
    """The λ=1 shortcut and the greedy loop agree where diversity barely matters."""
    scores = np.linspace(1, 0, 30)
    vecs = unit(30, 16, 1)
    assert mmr_order(scores, vecs, 10, lam=1.0 - 1e-9).tolist() == list(range(10))


def test_diversity_skips_a_near_duplicate() -> None:
    vecs = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    got = rerank(["a", "a2", "b", "c"], [0.9, 0.89, 0.6, 0.5], vecs, 3, lam=0.5)
    assert [i for i, _ in got] == ["a", "b", "c"]
    assert dict(got) == {"a": 0.9, "b": 0.6, "c": 0.5}  # relevance scores are reported unchanged


def test_novelty_penalty_demotes_the_popular_item() -> None:
    vecs = unit(2, 4, 0)
    plain = rerank(["hit", "niche"], [0.8, 0.75], vecs, 2)
    assert [i for i, _ in plain] == ["hit", "niche"]
    novel = rerank(["hit", "niche"], [0.8, 0.75], vecs, 2, novelty_weight=0.05, popularity=[1000, 1])
    assert [i for i, _ in novel] == ["niche", "hit"]
    assert novelty_penalty([0, np.e - 1, -3, np.nan], 2.0) == pytest.approx([0.0, 2.0, 0.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    excluded=st.sets(st.integers(0, 24)),
    k=st.integers(0, 30),
    lam=st.floats(0, 1),
    keep_rest=st.booleans(),
)
def test_rerank_never_returns_excluded_and_keeps_every_candidate_once(
    n: int, excluded: set[int], k: int, lam: float, keep_rest: bool
) -> None:
    items = [f"i{j}" for j in range(n)]
    exclude = {f"i{j}" for j in excluded}
    scores = np.random.default_rng(n).random(n)
    got = [i for i, _ in rerank(items, scores, unit(n, 6, n), k, lam=lam, exclude=exclude, keep_rest=keep_rest)]
    allowed = [i for i in items if i not in exclude]
    assert not set(got) & exclude
    assert len(got) == len(set(got)) == (len(allowed) if keep_rest else min(k, len(allowed)))


def test_keep_rest_appends_the_tail_in_relevance_order() -> None:
    vecs = np.array([[1, 0], [1, 0], [0, 1], [0.7, 0.7]], dtype=np.float32)
    got = [i for i, _ in rerank(["a", "b", "c", "d"], [0.9, 0.8, 0.3, 0.2], vecs, 2, lam=0.3, keep_rest=True)]
    assert got[:2] == ["a", "c"] and got[2:] == ["b", "d"]


def test_zero_and_unnormalised_vectors_are_handled() -> None:
    vecs = np.array([[3, 0], [0, 0], [0, 5]], dtype=np.float32)
    got = mmr_order([0.5, 0.4, 0.3], vecs, 3, lam=0.5)
    assert sorted(got.tolist()) == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs",
    [{"lam": 1.5}, {"lam": -0.1}],
)
def test_bad_lambda(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="lam"):
        mmr_order([0.1], np.ones((1, 2)), 1, **kwargs)


def test_shape_mismatches() -> None:
    with pytest.raises(ValueError):
        rerank(["a", "b"], [0.1, 0.2], np.ones((3, 2)), 1)
    with pytest.raises(ValueError):
        rerank(["a", "b"], [0.1, 0.2], np.ones((2, 2)), 1, novelty_weight=1.0, popularity=[1.0])

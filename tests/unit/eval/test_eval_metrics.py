"""Recall@K / NDCG@K on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from fusionrec.evaluation.metrics import MetricSet, ndcg_at_k, recall_at_k


def test_hit_at_first_rank() -> None:
    assert recall_at_k(["a", "b"], {"a"}, 10) == 1.0
    assert ndcg_at_k(["a", "b"], {"a"}, 10) == 1.0


def test_hit_at_third_rank() -> None:
    # DCG = 1/log2(4) = 0.5, IDCG = 1
    assert ndcg_at_k(["x", "y", "a"], {"a"}, 10) == pytest.approx(0.5)
    assert recall_at_k(["x", "y", "a"], {"a"}, 10) == 1.0


def test_hit_beyond_k_counts_nothing() -> None:
    ranked = [f"i{n}" for n in range(20)] + ["a"]
    assert recall_at_k(ranked, {"a"}, 20) == 0.0
    assert ndcg_at_k(ranked, {"a"}, 20) == 0.0
    ranked = [f"i{n}" for n in range(10)] + ["a"]  # rank 11: in the top 20, not the top 10
    assert recall_at_k(ranked, {"a"}, 10) == 0.0
    assert ndcg_at_k(ranked, {"a"}, 20) == pytest.approx(1 / math.log2(12))


def test_two_relevant_items() -> None:
    # relevant at ranks 1 and 3: DCG = 1 + 0.5, IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert recall_at_k(["a", "x", "b"], {"a", "b"}, 2) == 0.5


def test_empty_ranking_and_no_relevant() -> None:
    assert ndcg_at_k([], {"a"}, 10) == 0.0
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], set(), 10)


def test_metric_set_means() -> None:
    m = MetricSet()
    m.add(["a"], {"a"})  # ndcg 1
    m.add(["x", "y", "a"], {"a"})  # ndcg 0.5
    m.add(["x"], {"a"})  # miss
    mean = m.mean()
    assert m.n == 3
    assert mean["ndcg@10"] == pytest.approx(0.5)
    assert mean["recall@10"] == pytest.approx(2 / 3)
    assert MetricSet().mean()["ndcg@20"] == 0.0

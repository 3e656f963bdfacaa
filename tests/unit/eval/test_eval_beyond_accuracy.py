"""Coverage, intra-list diversity and novelty on hand-computed cases; the BeyondAccuracy accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusionrec.evaluation.metrics import BeyondAccuracy, coverage_at_k, intra_list_diversity, novelty_at_k


def test_coverage_counts_distinct_items_in_the_top_k() -> None:
    lists = [["a", "b", "c"], ["b", "a", "d"], ["e"]]
    assert coverage_at_k(lists, 10, 2) == pytest.approx(3 / 10)  # a, b, e
    assert coverage_at_k(lists, 10, 3) == pytest.approx(5 / 10)
    assert coverage_at_k([], 10, 3) == 0.0
    with pytest.raises(ValueError):
        coverage_at_k(lists, 0, 3)


def test_diversity_hand_computed() -> None:
    same = np.ones((4, 3))
    assert intra_list_diversity(same) == pytest.approx(0.0)
    orthogonal = np.eye(3)
    assert intra_list_diversity(orthogonal) == pytest.approx(1.0)
    opposite = np.array([[1.0, 0.0], [-2.0, 0.0]])  # cos = -1, unnormalised on purpose
    assert intra_list_diversity(opposite) == pytest.approx(2.0)
    # 45°: 1 - cos = 1 - 1/sqrt(2); pairs (0,1) 45°, (0,2) 90°, (1,2) 45°
    v = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    expected = (2 * (1 - 1 / math.sqrt(2)) + 1) / 3
    assert intra_list_diversity(v) == pytest.approx(expected)
    assert intra_list_diversity(v[:1]) == 0.0 and intra_list_diversity(np.zeros((0, 2))) == 0.0


def test_diversity_uses_only_the_first_k() -> None:
    v = np.vstack([np.ones((10, 2)), np.array([[1.0, -1.0]])])  # 11th item differs, 10 identical ahead of it
    assert intra_list_diversity(v) == pytest.approx(0.0)
    assert intra_list_diversity(v, k=11) > 0.0


def test_novelty_hand_computed() -> None:
    pop = {"hit": 99.0, "mid": 9.0}
    # p(hit) = 100/100 -> 0 bits; p(mid) = 10/100 -> log2(10); p(new) = 1/100 -> log2(100)
    assert novelty_at_k(["hit"], pop, 99) == pytest.approx(0.0)
    assert novelty_at_k(["mid", "new"], pop, 99) == pytest.approx((math.log2(10) + math.log2(100)) / 2)
    assert novelty_at_k(["new", "hit", "mid"], pop, 99, k=1) == pytest.approx(math.log2(100))
    assert novelty_at_k([], pop, 99) == 0.0
    assert novelty_at_k(["x"], {}, 0) == 0.0  # nothing seen yet: every item is p = 1


def test_beyond_accuracy_accumulates() -> None:
    acc = BeyondAccuracy(catalog_size=8)
    pop = {"a": 3.0, "b": 0.0}
    acc.add(["a", "b"], np.eye(2), pop, total=3)
    acc.add(["a", "c"], np.ones((2, 2)), pop)  # total defaults to the sum of the counts (3)
    row = acc.mean()
    assert set(row) == {"coverage@10", "diversity@10", "novelty@10"}
    assert row["coverage@10"] == pytest.approx(3 / 8)
    assert row["diversity@10"] == pytest.approx((1.0 + 0.0) / 2)
    list1 = (0 + 2) / 2  # a: p = 4/4 -> 0 bits; b: p = 1/4 -> 2 bits
    list2 = (0 + 2) / 2
    assert row["novelty@10"] == pytest.approx((list1 + list2) / 2)
    assert acc.mean(catalog_size=3)["coverage@10"] == pytest.approx(1.0)


def test_beyond_accuracy_without_vectors_and_empty() -> None:
    assert BeyondAccuracy().mean() == {"coverage@10": 0.0, "diversity@10": 0.0, "novelty@10": 0.0}
    acc = BeyondAccuracy(catalog_size=4, k=2)
    acc.add(["a", "b", "c"], None, {}, total=0)
    assert acc.mean() == {"coverage@2": 0.5, "diversity@2": 0.0, "novelty@2": 0.0}


def test_merged_is_a_union_of_items_and_a_sum_of_means() -> None:
    a, b = BeyondAccuracy(catalog_size=10), BeyondAccuracy(catalog_size=10)
    a.add(["x", "y"], np.eye(2), {}, total=0)
    b.add(["y", "z"], np.ones((2, 2)), {}, total=0)
    m = BeyondAccuracy.merged([a, b])
    assert m.mean() == pytest.approx({"coverage@10": 0.3, "diversity@10": 0.5, "novelty@10": 0.0})
    with pytest.raises(ValueError):
        BeyondAccuracy.merged([a, BeyondAccuracy(k=5)])

"""Recall@K and NDCG@K with binary relevance, and a running mean of them per slice.

    >>> ndcg_at_k(["a", "b", "c"], {"b"}, 10)  # the relevant item at rank 2: 1/log2(3)
    0.6309297535714575
    >>> recall_at_k(["a", "b", "c"], {"b", "z"}, 2)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence, Set

__all__ = ["recall_at_k", "ndcg_at_k", "MetricSet", "KS", "METRIC_NAMES"]

KS = (10, 20)
METRIC_NAMES = tuple(f"{m}@{k}" for k in KS for m in ("recall", "ndcg"))


def recall_at_k(ranked: Sequence[str], relevant: Set[str], k: int) -> float:
    """Share of the relevant items found in the first ``k`` of ``ranked``."""
    if not relevant:
        raise ValueError("recall is undefined without a relevant item")
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: Set[str], k: int) -> float:
    """DCG of the first ``k`` (gain 1/log2(rank+1), ranks from 1) over the ideal DCG."""
    if not relevant:
        raise ValueError("NDCG is undefined without a relevant item")
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(ranked[:k]) if item in relevant)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return dcg / idcg


class MetricSet:
    """Sums of the four metrics over targets; ``mean()`` gives the table row."""

    def __init__(self) -> None:
        self.n = 0
        self.sums = dict.fromkeys(METRIC_NAMES, 0.0)

    def add(self, ranked: Sequence[str], relevant: Set[str]) -> None:
        self.n += 1
        for k in KS:
            self.sums[f"recall@{k}"] += recall_at_k(ranked, relevant, k)
            self.sums[f"ndcg@{k}"] += ndcg_at_k(ranked, relevant, k)

    def mean(self) -> dict[str, float]:
        return {name: (total / self.n if self.n else 0.0) for name, total in self.sums.items()}

    @staticmethod
    def merged(sets: Iterable[MetricSet]) -> MetricSet:
        out = MetricSet()
        for s in sets:
            out.n += s.n
            for name in METRIC_NAMES:
                out.sums[name] += s.sums[name]
        return out

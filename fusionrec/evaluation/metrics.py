"""Recall@K and NDCG@K with binary relevance, and a running mean of them per slice; plus the
beyond-accuracy metrics (catalog coverage, intra-list diversity, novelty) that show what an
exploration or re-ranking policy buys for the accuracy it costs.

    >>> ndcg_at_k(["a", "b", "c"], {"b"}, 10)  # the relevant item at rank 2: 1/log2(3)
    0.6309297535714575
    >>> recall_at_k(["a", "b", "c"], {"b", "z"}, 2)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set

import numpy as np
import numpy.typing as npt

__all__ = [
    "recall_at_k",
    "ndcg_at_k",
    "MetricSet",
    "KS",
    "METRIC_NAMES",
    "coverage_at_k",
    "intra_list_diversity",
    "novelty_at_k",
    "BeyondAccuracy",
    "BEYOND_NAMES",
]

KS = (10, 20)
METRIC_NAMES = tuple(f"{m}@{k}" for k in KS for m in ("recall", "ndcg"))
BEYOND_NAMES = ("coverage@10", "diversity@10", "novelty@10")


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


# --- beyond accuracy ------------------------------------------------------------------------------


def coverage_at_k(recommended_lists: Iterable[Sequence[str]], catalog_size: int, k: int) -> float:
    """Share of the catalog that appears in at least one top-``k``: a popularity-bound ranker scores low.

    >>> coverage_at_k([["a", "b"], ["b", "c"]], catalog_size=10, k=2)
    0.3
    """
    if catalog_size <= 0:
        raise ValueError(f"catalog_size must be > 0, got {catalog_size}")
    seen: set[str] = set()
    for ranked in recommended_lists:
        seen.update(ranked[:k])
    return len(seen) / catalog_size


def intra_list_diversity(ranked_vectors: npt.ArrayLike, k: int = 10) -> float:
    """Mean pairwise ``1 − cos`` of the first ``k`` vectors (0 = all alike); 0.0 for fewer than two items.

    Vectors are normalised here (a zero vector has cosine 0 with everything), so callers may pass raw
    item vectors.

    >>> round(intra_list_diversity([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), 6)  # pairs: 1, 0, 1
    0.666667
    """
    v = np.asarray(ranked_vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"ranked_vectors must be a 2-d array (n × d), got shape {v.shape}")
    v = v[:k]
    n = v.shape[0]
    if n < 2:
        return 0.0
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    sim = unit @ unit.T
    pairs = sim[np.triu_indices(n, k=1)]
    return float(np.mean(1.0 - pairs))


def novelty_at_k(ranked: Sequence[str], popularity_counts: Mapping[str, float], total: float, k: int = 10) -> float:
    """Mean self-information ``−log2 p(i)`` of the first ``k`` items, ``p(i) = (count_i + 1) / (total + 1)``.

    The add-one smoothing keeps an item nobody has touched finite (``log2(total + 1)`` bits) and an
    item everybody touched at 0 bits.  0.0 for an empty list.

    >>> novelty_at_k(["hit", "new"], {"hit": 7}, total=7)  # (0 + 3) / 2 bits
    1.5
    """
    top = ranked[:k]
    if not top:
        return 0.0
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    denom = float(total) + 1.0
    bits = [-math.log2(min((max(float(popularity_counts.get(i, 0.0)), 0.0) + 1.0) / denom, 1.0)) for i in top]
    return math.fsum(bits) / len(bits)


class BeyondAccuracy:
    """Running coverage, diversity and novelty at ``k`` over recommended lists.

    Coverage is over the union of every list (distinct items recommended / catalog size), so it is not
    a mean; diversity and novelty are means over lists.  ``merged`` combines per-slice accumulators the
    way :meth:`MetricSet.merged` does.
    """

    def __init__(self, catalog_size: int = 0, k: int = 10) -> None:
        self.k = k
        self.catalog_size = catalog_size
        self.n = 0
        self.items: set[str] = set()
        self.diversity_sum = 0.0
        self.novelty_sum = 0.0

    @property
    def names(self) -> tuple[str, str, str]:
        return (f"coverage@{self.k}", f"diversity@{self.k}", f"novelty@{self.k}")

    def add(
        self,
        ranked: Sequence[str],
        vectors: npt.ArrayLike | None,
        popularity: Mapping[str, float],
        total: float | None = None,
    ) -> None:
        """Count one list; ``vectors`` are the items' vectors in list order (``None``: diversity 0).

        ``total`` is all interactions so far; without it the popularity counts are summed (O(catalog)).
        """
        diversity = intra_list_diversity(vectors, self.k) if vectors is not None else 0.0
        n_total = float(sum(popularity.values())) if total is None else float(total)
        self.add_scored(ranked, diversity, novelty_at_k(ranked, popularity, n_total, self.k))

    def add_scored(self, ranked: Sequence[str], diversity: float, novelty: float) -> None:
        """Count one list whose diversity and novelty at ``k`` are already computed (one list counted
        in several slices is scored once)."""
        self.n += 1
        self.items.update(ranked[: self.k])
        self.diversity_sum += diversity
        self.novelty_sum += novelty

    def mean(self, catalog_size: int | None = None) -> dict[str, float]:
        """The metric row; ``catalog_size`` overrides the constructor's (the catalog may grow online)."""
        size = self.catalog_size if catalog_size is None else catalog_size
        coverage, diversity, novelty = self.names
        return {
            coverage: len(self.items) / size if size > 0 else 0.0,
            diversity: self.diversity_sum / self.n if self.n else 0.0,
            novelty: self.novelty_sum / self.n if self.n else 0.0,
        }

    @staticmethod
    def merged(parts: Iterable[BeyondAccuracy]) -> BeyondAccuracy:
        parts = list(parts)
        out = BeyondAccuracy(max((p.catalog_size for p in parts), default=0), parts[0].k if parts else 10)
        for p in parts:
            if p.k != out.k:
                raise ValueError(f"cannot merge k={p.k} into k={out.k}")
            out.n += p.n
            out.items |= p.items
            out.diversity_sum += p.diversity_sum
            out.novelty_sum += p.novelty_sum
        return out

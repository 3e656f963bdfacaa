"""Multi-objective re-ranking: relevance, diversity (MMR) and novelty in one greedy pass.

A list of ten near-identical items is a worse list than its per-item scores suggest, and a list of
the ten most popular items teaches the person nothing new.  Maximal Marginal Relevance picks, one slot
at a time, the candidate with the best

    λ · relevance_i − (1 − λ) · max_{j chosen} cos(v_i, v_j) − w · log(1 + popularity_i)

so ``λ = 1, w = 0`` is exactly the relevance order, and lowering ``λ`` or raising ``w`` trades relevance
for diversity and novelty.  Relevance is used as given (cosine scores live on the same scale as the
similarity term; a ranker with another scale should tune ``λ`` accordingly).

The pass is vectorised: one ``n×n`` similarity product, then ``k`` updates of a running max, so
``O(n²d + kn)`` for ``n`` candidates — a few hundred candidates cost well under a millisecond.

    >>> import numpy as np
    >>> vecs = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)  # a and b are the same item twice over
    >>> rerank(["a", "b", "c"], [0.9, 0.85, 0.6], vecs, 2, lam=0.5)
    [('a', 0.9), ('c', 0.6)]
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from fusionrec.policy.candidates import as_scores, keep_mask, order_by_score

__all__ = ["mmr_order", "rerank", "novelty_penalty"]


def novelty_penalty(popularity: npt.ArrayLike, weight: float) -> npt.NDArray[np.float64]:
    """``weight · log(1 + popularity)``: log so that the 10,000th view costs less than the 10th."""
    pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
    pop = np.where(np.isfinite(pop), np.maximum(pop, 0.0), 0.0)
    return float(weight) * np.log1p(pop)


def _unit_rows(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero): cosine must not depend on the caller's normalisation."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array (n × d), got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def mmr_order(
    scores: npt.ArrayLike,
    vectors: npt.ArrayLike,
    k: int,
    *,
    lam: float = 1.0,
    novelty_weight: float = 0.0,
    popularity: npt.ArrayLike | None = None,
) -> npt.NDArray[np.intp]:
    """Indices of the ``k`` candidates chosen greedily by MMR with a novelty penalty.

    Ties go to the lower index, so with ``lam=1`` and no novelty the result equals a stable sort by
    descending score.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    rel = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = rel.shape[0]
    v = _unit_rows(vectors)
    if v.shape[0] != n:
        raise ValueError(f"{v.shape[0]} vectors for {n} scores")
    k = min(k, n)
    base = lam * rel
    if popularity is not None and novelty_weight:
        pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
        if pop.shape[0] != n:
            raise ValueError(f"{pop.shape[0]} popularity counts for {n} scores")
        base = base - novelty_penalty(pop, novelty_weight)
    if lam == 1.0:  # no diversity term: one sort instead of k passes
        return order_by_score(base)[:k]
    sim = (v @ v.T).astype(np.float64)
    max_sim = np.zeros(n, dtype=np.float64)  # nothing chosen yet: no redundancy
    taken = np.zeros(n, dtype=bool)
    chosen = np.empty(k, dtype=np.intp)
    for slot in range(k):
        gain = base - (1.0 - lam) * max_sim
        gain[taken] = -np.inf
        best = int(np.argmax(gain))
        chosen[slot] = best
        taken[best] = True
        np.maximum(max_sim, sim[best], out=max_sim)
    return chosen


def rerank(
    items: Sequence[str],
    scores: npt.ArrayLike,
    vectors: npt.ArrayLike,
    k: int,
    *,
    lam: float = 1.0,
    novelty_weight: float = 0.0,
    popularity: npt.ArrayLike | None = None,
    exclude: Collection[str] = frozenset(),
    keep_rest: bool = False,
) -> list[tuple[str, float]]:
    """The re-ordered top-``k`` as ``(item_id, relevance score)``.

    ``exclude``, duplicate ids and non-finite scores are dropped first.  With ``keep_rest`` the
    candidates MMR did not pick follow in relevance order, so an exploration policy applied afterwards
    still has a tail to draw from.
    """
    values = as_scores(scores, len(items))
    keep = np.flatnonzero(keep_mask(items, values, exclude))
    vecs = np.asarray(vectors, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(items):
        raise ValueError(f"vectors must have shape ({len(items)}, d), got {vecs.shape}")
    pop = None
    if popularity is not None:
        pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
        if pop.shape[0] != len(items):
            raise ValueError(f"{pop.shape[0]} popularity counts for {len(items)} candidates")
        pop = pop[keep]
    kept_scores = values[keep]
    order = mmr_order(kept_scores, vecs[keep], k, lam=lam, novelty_weight=novelty_weight, popularity=pop)
    if keep_rest:
        picked = np.zeros(len(keep), dtype=bool)
        picked[order] = True
        rest = order_by_score(kept_scores)
        order = np.concatenate([order, rest[~picked[rest]]])
    return [(items[keep[i]], float(kept_scores[i])) for i in order]

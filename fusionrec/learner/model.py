"""The model the ranker reads: learned weights and interaction statistics frozen at one publication.

Score of item ``i`` of target platform ``t`` for a request (all terms batched, no text re-encoding)::

    s(i) = w_t · f(i)   with features f(i) =
        [ cos(fused profile, v_i)          -- multi-platform fusion of fusion.py
          cos(own-platform profile, v_i)   -- the target platform's profile alone
          cos(last item, v_i)              -- sequential, by text
          log1p(C[last → i])               -- online item-to-item co-occurrence, last item
          log1p(Σ_k r_k C[j_k → i]/√n_j)   -- the same over the recent window (r_k = 1/(k+1))
          log1p(pop_short(i)), log1p(pop_long(i))   -- time-decayed popularity on ``t``
          log1p(Σ_j C[j → i]/√(n_j·c_i))    -- item-kNN: cosine-normalised over the whole sequence
                                              (c_i = positive interactions with i)
          new(i), new(i)·cos(fused, v_i), new(i)·cos(last, v_i)
                                           -- new(i) = 1 while nobody has interacted with i positively
          q_seq · v_i ]                    -- the learned sequence model over text (learner.sequence),
                                              0 while none is installed

A never-interacted item has no co-occurrence and no popularity, so without the last three features
its score is its text similarity alone, far below the items that have both; with them the ranker
learns how likely the next item is a new one (the bias) and how sharply text picks it.

The three text features and the sequence model's are linear in ``v_i``, so they fold into one query vector per request
(:meth:`PlatformModel.text_query`); that is what the candidate index is searched with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["FEATURES", "INITIAL_WEIGHTS", "PlatformModel", "PublishedModel", "N_FEATURES"]

FEATURES = (
    "cos_fused",
    "cos_own",
    "cos_last",
    "cooc_last",
    "cooc_window",
    "pop_short",
    "pop_long",
    "cooc_knn",
    "new",
    "new_cos_fused",
    "new_cos_last",
    "seq",
)
N_FEATURES = len(FEATURES)
INITIAL_WEIGHTS = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
COS_FUSED, COS_OWN, COS_LAST, COOC_LAST, COOC_WINDOW, POP_SHORT, POP_LONG, COOC_KNN, NEW, NEW_FUSED, NEW_LAST, SEQ = range(N_FEATURES)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PlatformModel:
    """One target platform's published model (arrays are indexed by item-store row, ``n`` rows)."""

    weights: npt.NDArray[np.float64]
    n: int
    pop: F32  # (2, n) log1p of the decayed counts
    inv_count: F32  # (n,) 1/sqrt(max(c_i, 1))
    src_norm: F32  # (n,) 1/sqrt(n_j): normaliser of row j of the co-occurrence matrix (1 where n_j = 0)
    new: npt.NDArray[np.bool_]  # (n,) live and never interacted with positively
    pop_score: F32  # (n,) the popularity terms of the score, w_short·pop_short + w_long·pop_long
    popular: npt.NDArray[np.int64]  # rows with the best popularity contribution, best first
    cooc_base: sp.csr_matrix
    cooc_recent: sp.csr_matrix

    @property
    def uses_cooc(self) -> bool:
        w = self.weights
        return bool(w[COOC_LAST] or w[COOC_WINDOW] or w[COOC_KNN])

    @property
    def uses_new(self) -> bool:
        w = self.weights
        return bool(w[NEW] or w[NEW_FUSED] or w[NEW_LAST])

    def text_query(self, fused: F32, own: F32, last: F32, seq: F32 | None = None) -> F32:
        """``(B, d)``: ``q · v_i`` is the text features' summed contribution to ``s(i)`` (``seq``: the
        sequence model's queries, left out while its weight is 0)."""
        w = self.weights
        q = np.float32(w[COS_FUSED]) * fused + np.float32(w[COS_OWN]) * own + np.float32(w[COS_LAST]) * last
        if seq is not None and w[SEQ]:
            q = q + np.float32(w[SEQ]) * seq
        return q.astype(np.float32)

    def new_query(self, fused: F32, last: F32) -> F32:
        """The same for the new-item text features (they apply to never-interacted items only)."""
        w = self.weights
        return (np.float32(w[NEW_FUSED]) * fused + np.float32(w[NEW_LAST]) * last).astype(np.float32)

    def cooc_times(self, h: sp.csr_matrix) -> sp.csr_matrix:
        """``h @ (base + recent)`` as one product ``[h, h] @ [base; recent]``: the product's accumulator
        sums the two parts, which costs less than adding two sparse results (indices not sorted)."""
        if not self.cooc_recent.nnz:
            return h @ self.cooc_base
        rows = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
        both = sp.csr_matrix(
            (np.concatenate([h.data, h.data]), (np.concatenate([rows, rows]), np.concatenate([h.indices, h.indices + self.n]))),
            shape=(h.shape[0], 2 * self.n),
        )
        return both @ self._cooc_stacked

    @cached_property
    def cooc_parts(self) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer], F32, npt.NDArray[np.integer], npt.NDArray[np.integer], F32]:
        """``(indptr, indices, data)`` of ``cooc_base`` then of ``cooc_recent``: what the compiled
        co-occurrence loops read (``learner.cooc_kernel``)."""
        parts = []
        for m in (self.cooc_base, self.cooc_recent):
            parts += [m.indptr, m.indices, m.data.astype(np.float32, copy=False)]
        return tuple(parts)  # type: ignore[return-value]

    @cached_property
    def _cooc_stacked(self) -> sp.csr_matrix:
        return sp.vstack([self.cooc_base, self.cooc_recent], format="csr")


@dataclass(frozen=True)
class PublishedModel:
    """Every platform's model at one publication; ``version`` counts publications."""

    version: int
    platforms: dict[str, PlatformModel]

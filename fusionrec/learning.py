"""The learned, global (shared across persons) part of the model, trained online from the stream.

Score of item ``i`` of target platform ``t`` for a person (all terms batched, no text re-encoding)::

    s(i) = w_t · f(i)   with features f(i) =
        [ cos(fused profile, v_i)          -- multi-platform fusion of fusion.py
          cos(own-platform profile, v_i)   -- the target platform's profile alone
          cos(last item, v_i)              -- sequential, by text (any platform)
          log1p(C[last → i])               -- online item-to-item co-occurrence, last item
          log1p(Σ_k r_k C[j_k → i]/√n_j)   -- the same over the recent window (r_k = 1/(k+1))
          log1p(pop_short(i)), log1p(pop_long(i))   -- time-decayed popularity on ``t``
          log1p(Σ_j C[j → i]/√(n_j·c_i))    -- item-kNN: cosine-normalised over the whole sequence
                                              (c_i = positive interactions with i)
          new(i), new(i)·cos(fused, v_i), new(i)·cos(last, v_i) ]
                                           -- new(i) = 1 while nobody has interacted with i positively

A never-interacted item has no co-occurrence and no popularity, so without the last three features
its score is its text similarity alone, far below the items that have both.  With them the ranker
learns (from the stream, like every weight) how likely the next item is a new one (the bias) and
how sharply text picks the right new item (the two text weights): the softmax puts new items into
the list when their share of the traffic and their text match earn it.  :meth:`rank` can also return
the best new items below the top-K, for the policy's new-item slot (``policy.new_item_position``).

The three text features are linear in ``v_i``, so they fold into one query vector: one matmul per
request, then dense adds for popularity and sparse adds for co-occurrence.  The weights ``w_t`` are
per target platform (a learned, context-aware gate between the fused profile, the platform's own
profile, the sequence and the collaborative signals).  They are learned test-then-train: for every
positive event, before it is folded into the person's state, the features of the true item and of
uniformly sampled items of its platform are computed with the *published* model (what would have
ranked it) and one Adagrad step on the sampled-softmax loss updates the *live* weights.

The statistics (co-occurrence counts, time-decayed popularity) are live: every learned event updates
them at once (they are counts, not fitted).  The weights are fitted, and the ranker uses the copy
*published* every ``publish_every`` learned events, at the start of a batch; a short stream (fewer
events than that) therefore ranks exactly as the plain fusion of fusion.py (initial weights 1, 0...).
Checkpoints (:meth:`save_checkpoint`) hold weights, Adagrad state, counts and popularity, in
safetensors, keyed by item id.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fusionrec.errors import CheckpointError
from fusionrec.policy.context import ContextGate

__all__ = ["Catalog", "OnlineLearner", "RankRequest", "FEATURES"]

Vector = npt.NDArray[np.float32]

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
)
INITIAL_WEIGHTS = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
INITIAL_GRAD_SQ = 1e-6
N_TEXT = 3
NEW, NEW_FUSED, NEW_LAST = 8, 9, 10  # columns of the new-item features
WINDOW = 5  # co-occurrence window (items before the current one)
SEQ_FEATURE = 10  # recent items whose co-occurrence lists feed the window feature
KNN_HISTORY = 20  # items whose co-occurrence lists feed the item-kNN feature (the whole sequence)
BACKWARD = 0.5  # weight of the reverse direction (i after j also counts j near i, less)
NEW_DENSE_SHARE = 0.3  # above this share of new items, new-item scores are computed densely (see below)
RANK_CHUNK = 256  # requests per matrix product: (256 x n) float32 scores stay a few MB


def _weighted_sum(parts: Sequence[tuple[float, Vector | None]]) -> Vector | None:
    """``Σ weight · vec`` over the parts with a vector and a non-zero weight; None when there are none."""
    q = None
    for weight, vec in parts:
        if vec is None or weight == 0.0:
            continue
        term = np.float32(weight) * vec
        q = term if q is None else q + term
    return q


def _by_feature(values: np.ndarray, names: Sequence[str], defaults: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``values`` (one per feature of ``names``) laid out as FEATURES, ``defaults`` where a feature is missing."""
    out = defaults.astype(np.float64).copy()
    for name, value in zip(names, np.asarray(values, np.float64).tolist()):
        out[FEATURES.index(name)] = value
    return out


def _query_matrix(queries: Sequence[Vector | None], dim: int) -> Vector:
    """(len(queries), dim): one query per row, zeros where there is none."""
    Q = np.zeros((len(queries), dim), np.float32)
    for b, q in enumerate(queries):
        if q is not None:
            Q[b] = q
    return Q


def top_k_rows(scores: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` largest entries of every row, unordered: ``(values, columns)``, each ``(B, k)``.

    torch's top-k runs several times faster than ``np.argpartition`` on (256 x 8k) rows; which of
    several equal scores at the cut is kept is arbitrary in both.
    """
    import torch  # the encoder's dependency; imported here so that importing this module stays light

    values, cols = torch.from_numpy(scores).topk(k, dim=1, sorted=False)
    return values.numpy(), cols.numpy()


class Catalog:
    """Item vectors per platform in dense matrices (rows never move; deleted rows are dead)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids: dict[str, list[str]] = {}
        self.mats: dict[str, Vector] = {}
        self.alive: dict[str, npt.NDArray[np.bool_]] = {}
        self.row: dict[str, tuple[str, int]] = {}  # item id -> (platform, row)
        self._rows_by_platform: dict[str, dict[str, int]] = {}  # platform -> live item id -> row
        self.version = 0  # bumped by every upsert and delete (caches of item vectors key on it)

    def rows_of(self, platform: str) -> dict[str, int]:
        """Live item id -> row of ``platform`` (read-only for callers)."""
        return self._rows_by_platform.get(platform, {})

    def size(self, platform: str) -> int:
        return len(self.ids.get(platform, ()))

    def upsert(self, item_ids: Sequence[str], platforms: Sequence[str], vectors: Vector) -> None:
        self.version += 1
        for item, platform, vec in zip(item_ids, platforms, vectors):
            where = self.row.get(item)
            if where is not None and where[0] != platform:
                self.delete([item])
                where = None
            if where is None:
                ids = self.ids.setdefault(platform, [])
                r = len(ids)
                ids.append(item)
                self._reserve(platform, r + 1)
                self.row[item] = (platform, r)
                self._rows_by_platform.setdefault(platform, {})[item] = r
            else:
                r = where[1]
            self.mats[platform][r] = vec
            self.alive[platform][r] = True

    def _reserve(self, platform: str, n: int) -> None:
        mat = self.mats.get(platform)
        if mat is None:
            self.mats[platform] = np.zeros((max(n, 64), self.dim), np.float32)
            self.alive[platform] = np.zeros(max(n, 64), bool)
        elif len(mat) < n:
            cap = max(n, 2 * len(mat))
            grown = np.zeros((cap, self.dim), np.float32)
            grown[: len(mat)] = mat
            alive = np.zeros(cap, bool)
            alive[: len(mat)] = self.alive[platform]
            self.mats[platform], self.alive[platform] = grown, alive

    def delete(self, item_ids: Sequence[str]) -> None:
        self.version += 1
        for item in item_ids:
            where = self.row.pop(item, None)
            if where is not None:
                self._rows_by_platform[where[0]].pop(item, None)
                self.alive[where[0]][where[1]] = False
                self.mats[where[0]][where[1]] = 0.0

    def vector(self, item_id: str) -> Vector | None:
        where = self.row.get(item_id)
        return None if where is None else self.mats[where[0]][where[1]]


@dataclass
class _Neighbours:
    """Growable sparse row: co-occurrence counts of one source item with items of one platform."""

    pos: dict[int, int] = field(default_factory=dict)
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(8, np.int64))
    vals: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(8, np.float32))

    def add(self, row: int, inc: float) -> None:
        p = self.pos.get(row)
        if p is None:
            p = len(self.pos)
            self.pos[row] = p
            if p >= len(self.rows):
                self.rows = np.concatenate([self.rows, np.zeros_like(self.rows)])
                self.vals = np.concatenate([self.vals, np.zeros_like(self.vals)])
            self.rows[p] = row
        self.vals[p] += inc

    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        n = len(self.pos)
        return self.rows[:n], self.vals[:n]


@dataclass(frozen=True, slots=True)
class RankRequest:
    """What ranking one person on one platform needs, frozen at the moment of the request."""

    platform: str
    fused: Vector | None  # unit vector of the fused profile (fusion.py)
    own: Vector | None  # unit vector of the target platform's profile
    seq: tuple[str, ...]  # recent items, oldest first (restricted to the target platform if asked)
    consumed: frozenset[str]


class OnlineLearner:
    def __init__(
        self,
        dim: int,
        *,
        publish_every: int = 256,
        negatives: int = 64,
        lr: float = 0.1,
        train_every: int = 2,
        hard: int = 0,
        pop_half_lives_s: tuple[float, float] = (7 * 86400.0, 365 * 86400.0),
        seed: int = 0,
    ) -> None:
        self.catalog = Catalog(dim)
        self.publish_every = publish_every
        self.negatives = negatives
        self.lr = lr
        self.train_every = train_every
        self.hard = hard
        self.positives = 0
        self.pop_half_lives_s = pop_half_lives_s
        self.rng = np.random.default_rng(seed)
        self.cooc: dict[str, dict[str, _Neighbours]] = {}  # src item -> target platform -> counts
        self.src_count: dict[str, float] = {}
        self.weights: dict[str, npt.NDArray[np.float64]] = {}  # live
        self.grad_sq: dict[str, npt.NDArray[np.float64]] = {}
        self.pop: dict[str, npt.NDArray[np.float64]] = {}  # live popularity, (2, n), as of pop_ts
        self.counts: dict[str, npt.NDArray[np.float64]] = {}  # positive interactions per item row (not decayed)
        self.pop_ts = float("-inf")
        self.pop_ref = float("-inf")
        self.pop_version = 0
        self._pop_cache: dict[str, tuple[int, npt.NDArray[np.float32]]] = {}
        # platform -> (catalog version, rows that were new when it was built, their vectors transposed)
        self._new_block: dict[str, tuple[int, npt.NDArray[np.int64], Vector]] = {}
        self._slots: dict[str, npt.NDArray[np.int64]] = {}  # scratch of _cooc_features
        self._sampler: dict[str, tuple[tuple[int, int], npt.NDArray[np.float64] | None, npt.NDArray[np.float64]]] = {}
        self.unpublished = 0
        self.learned = 0
        self.published_version = 0
        # the published (ranking) model
        self.pub_weights: dict[str, npt.NDArray[np.float64]] = {}
        self.context = ContextGate()  # context-aware fusion weights (fusionrec.policy.context)

    # ----------------------------------------------------------------------------- weights

    def weights_of(self, platform: str) -> npt.NDArray[np.float64]:
        return self.pub_weights.get(platform, INITIAL_WEIGHTS)

    # ----------------------------------------------------------------------------- features

    def text_query(self, req: RankRequest, w: npt.NDArray[np.float64]) -> Vector | None:
        """The text features' weighted query: ``q · v_i`` is their summed contribution to ``s(i)``."""
        last = self.catalog.vector(req.seq[-1]) if req.seq else None
        return _weighted_sum([(w[0], req.fused), (w[1], req.own), (w[2], last)])

    def new_item_query(self, req: RankRequest, w: npt.NDArray[np.float64]) -> Vector | None:
        """The same for the new-item text features (added to never-interacted items only)."""
        last = self.catalog.vector(req.seq[-1]) if req.seq else None
        return _weighted_sum([(w[NEW_FUSED], req.fused), (w[NEW_LAST], last)])

    def new_mask(self, platform: str, n: int) -> npt.NDArray[np.bool_]:
        """(n,) True for the live items of ``platform`` nobody has interacted with positively yet."""
        new = self.catalog.alive[platform][:n].copy() if platform in self.catalog.alive else np.zeros(n, bool)
        counts = self.counts.get(platform)
        if counts is not None:
            m = min(n, len(counts))
            new[:m] &= counts[:m] == 0.0
        return new

    def new_rows(self, platform: str, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """``new_mask`` at ``rows`` only (O(len(rows)), not O(catalog))."""
        alive = self.catalog.alive.get(platform)
        if alive is None:
            return np.zeros(len(rows), bool)
        out = alive[rows].copy()
        counts = self.counts.get(platform)
        if counts is not None:
            seen = out & (rows < len(counts))
            out[seen] = counts[rows[seen]] == 0.0
        return out

    def new_item_block(self, platform: str) -> tuple[npt.NDArray[np.int64], Vector]:
        """``(rows, (dim, len(rows)) vectors)`` of the new items of ``platform``, for the new-item scores.

        Items stop being new one at a time, and copying the block at every change would cost more than
        scoring it; so the block is rebuilt only when the catalog changed or when most of its rows are
        no longer new, and callers keep the rows that still are (``new_rows``).
        """
        n = self.catalog.size(platform)
        cached = self._new_block.get(platform)
        if cached is not None and cached[0] == self.catalog.version:
            rows = cached[1]
            if 2 * int(self.new_rows(platform, rows).sum()) >= len(rows):
                return rows, cached[2]
        rows = np.flatnonzero(self.new_mask(platform, n))
        block = np.ascontiguousarray(self.catalog.mats[platform][rows].T)
        self._new_block[platform] = (self.catalog.version, rows, block)
        return rows, block

    def is_new(self, platform: str, item_ids: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Whether each item is a live item of ``platform`` that nobody has interacted with positively yet."""
        rows_of = self.catalog.rows_of(platform)  # live items only
        rows = np.fromiter((rows_of.get(i, -1) for i in item_ids), np.int64, len(item_ids))
        out = rows >= 0
        counts = self.counts.get(platform)
        if counts is not None:
            seen = out & (rows < len(counts))
            out[seen] = counts[rows[seen]] == 0.0
        return out

    def _cooc_features(self, platform: str, seq: Sequence[str], rows: npt.NDArray[np.int64], f: npt.NDArray[np.float64]) -> None:
        """Columns 3, 4 and 7 of ``features`` (the three co-occurrence features) at ``rows`` only: the
        neighbour lists are matched against the few rows instead of filling catalog-long arrays."""
        uniq, where = np.unique(rows, return_inverse=True)
        slot = self._row_slots(platform)  # catalog row -> position in uniq, -1 elsewhere
        slot[uniq] = np.arange(len(uniq))
        acc = np.zeros((3, len(uniq)), np.float32)  # last, window, knn
        found = False
        for k, item in enumerate(reversed(seq[-KNN_HISTORY:])):
            nb = self.cooc.get(item, {}).get(platform)
            if nb is None or not nb.pos:
                continue
            found = True
            nb_rows, vals = nb.arrays()
            pos = slot[nb_rows]
            hit = pos >= 0
            pos, vals = pos[hit], vals[hit]  # distinct: the rows of one neighbour list are
            inv = np.float32(1.0 / math.sqrt(self.src_count.get(item, 1.0)))
            if k == 0:
                acc[0, pos] += vals
            if k < SEQ_FEATURE:
                acc[1, pos] += vals * (inv / np.float32(k + 1))
            acc[2, pos] += vals * inv
        slot[uniq] = -1
        if not found:
            return
        acc[2] *= self.inv_sqrt_counts(platform, 0, uniq)
        f[:, [3, 4, 7]] = np.log1p(acc).T[where]

    def _row_slots(self, platform: str) -> npt.NDArray[np.int64]:
        """A scratch array over the platform's catalog rows, all -1 between uses (kept, not reallocated)."""
        n = self.catalog.size(platform)
        slots = self._slots.get(platform)
        if slots is None or len(slots) < n:
            slots = self._slots[platform] = np.full(max(n, 2 * len(slots) if slots is not None else 0), -1, np.int64)
        return slots

    def inv_sqrt_counts(self, platform: str, n: int, cols: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.float32]:
        """``1/sqrt(max(count_i, 1))`` of the positive interactions with each item (all rows, or ``cols``)."""
        counts = self.counts.get(platform)
        if cols is None:
            cols = np.arange(n)
        out = np.ones(len(cols), np.float32)
        if counts is not None:
            ok = cols < len(counts)
            out[ok] = 1.0 / np.sqrt(np.maximum(counts[cols[ok]], 1.0))
        return out

    def rank(self, requests: Sequence[RankRequest], k: int, *, new_items: int = 0) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(item_id, score)`` per request, best first (ties by catalog row).

        With ``new_items`` the list goes on with up to that many of the best-scored new items (nobody
        has interacted with them yet) that are not in the top ``k``, also best first: the candidates of
        the policy's new-item slot (their scores are below every top-``k`` score, so the whole list
        stays ordered).

        Requests are grouped by platform and scored ``RANK_CHUNK`` at a time with one matrix product
        against the platform's item matrix: per-request matrix-vector products cost several times more
        per event than one matrix-matrix product over the whole micro-batch.
        """
        out: list[list[tuple[str, float]]] = [[] for _ in requests]
        groups: dict[str, list[int]] = {}
        for n, req in enumerate(requests):
            groups.setdefault(req.platform, []).append(n)
        for platform, members in groups.items():
            for s in range(0, len(members), RANK_CHUNK):
                chunk = members[s : s + RANK_CHUNK]
                ranked_chunk = self._rank_chunk(platform, [requests[m] for m in chunk], k, new_items)
                for n, ranked in zip(chunk, ranked_chunk):
                    out[n] = ranked
        return out

    def _rank_chunk(self, platform: str, reqs: Sequence[RankRequest], k: int, new_items: int) -> list[list[tuple[str, float]]]:
        out: list[list[tuple[str, float]]] = [[] for _ in reqs]
        scored = self.batch_scores(platform, reqs)
        if scored is None or k <= 0:
            return out
        rows, scores = scored
        self._mask_consumed(scores, platform, [reqs[r].consumed for r in rows])
        ids = self.catalog.ids[platform]
        top = self._best_of(scores, min(k, scores.shape[1]))
        if new_items > 0:
            # the new items already in the top k are not candidates again (scores is not read after this)
            taken = np.concatenate([cols for cols, _ in top])
            scores[np.repeat(np.arange(len(top)), [len(cols) for cols, _ in top]), taken] = -np.inf
            new_cols = np.flatnonzero(self.new_mask(platform, scores.shape[1]))
            new_scores = scores[:, new_cols]
            best_new = self._best_of(new_scores, min(new_items, len(new_cols)))
            top = [(np.concatenate([c, new_cols[nc]]), np.concatenate([v, nv])) for (c, v), (nc, nv) in zip(top, best_new)]
        for b, r in enumerate(rows):
            cols, values = top[b]
            out[r] = [(ids[int(c)], float(v)) for c, v in zip(cols, values)]
        return out

    @staticmethod
    def _best_of(scores: npt.NDArray[np.float32], k: int) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Per row, the columns of its ``k`` best finite scores and the scores, best first (ties by column)."""
        if k <= 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in range(len(scores))]
        if k == 1:  # the new-item candidate: argmax takes the first of equal scores, as the sort below
            best = scores.argmax(axis=1)
            value = scores[np.arange(len(scores)), best]
            return [(best[b : b + 1].astype(np.int64), value[b : b + 1]) if np.isfinite(value[b]) else
                    (np.zeros(0, np.int64), np.zeros(0, np.float32)) for b in range(len(scores))]
        live = np.isfinite(scores).sum(axis=1)
        top_scores, top = top_k_rows(scores, k)
        out = []
        for b in range(len(scores)):
            order = np.lexsort((top[b], -top_scores[b]))[: min(k, int(live[b]))]
            out.append((top[b, order].astype(np.int64), top_scores[b, order]))
        return out

    def batch_scores(self, platform: str, reqs: Sequence[RankRequest]) -> tuple[list[int], npt.NDArray[np.float32]] | None:
        """``(usable request positions, (len(usable), n) scores)`` for requests of one platform.

        A request is usable when something is known of the person (a profile or a sequence); dead
        rows score -inf.  Row ``b`` is ``features(reqs[usable[b]], all rows) @ weights``.
        """
        cat = self.catalog
        n = cat.size(platform)
        if n == 0:
            return None
        w = self.weights_of(platform)
        rows = [r for r, req in enumerate(reqs) if req.fused is not None or req.seq]  # else nothing is known
        if not rows:
            return None
        scores = _query_matrix([self.text_query(reqs[r], w) for r in rows], cat.dim) @ cat.mats[platform][:n].T
        if w[3] != 0.0 or w[4] != 0.0 or w[7] != 0.0:
            bufs = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
            for b, r in enumerate(rows):
                self._add_cooc_row(scores[b], platform, reqs[r].seq, n, w, *bufs)
        pop = self.pop_features(platform)
        if pop is not None and (w[5] != 0.0 or w[6] != 0.0):
            m = min(n, pop.shape[1])
            scores[:, :m] += np.float32(w[5]) * pop[0, :m] + np.float32(w[6]) * pop[1, :m]
        if w[NEW] != 0.0 or w[NEW_FUSED] != 0.0 or w[NEW_LAST] != 0.0:
            self._add_new_item_scores(scores, platform, [reqs[r] for r in rows], w)
        scores[:, ~cat.alive[platform][:n]] = -np.inf
        return rows, scores

    def _add_new_item_scores(
        self, scores: npt.NDArray[np.float32], platform: str, reqs: Sequence[RankRequest], w: npt.NDArray[np.float64]
    ) -> None:
        """The new-item features, on the columns of the items nobody has interacted with yet only.

        Adding into scattered columns costs more per entry than the matrix product itself, so when new
        items are a large share of the catalog (a young catalog) the product runs over every item and a
        0/1 mask keeps the new ones; otherwise only the cached block of new items is scored.
        """
        n = scores.shape[1]
        queries = _query_matrix([self.new_item_query(req, w) for req in reqs], self.catalog.dim)
        rows, block = self.new_item_block(platform)
        keep = self.new_rows(platform, rows) & (rows < n)
        if not keep.any():
            return
        if keep.sum() > NEW_DENSE_SHARE * n:
            extra = queries @ self.catalog.mats[platform][:n].T
            extra += np.float32(w[NEW])
            extra *= self.new_mask(platform, n).astype(np.float32)
            scores += extra
            return
        extra = queries @ block
        scores[:, rows[keep]] += extra[:, keep] + np.float32(w[NEW])

    def _mask_consumed(self, scores: npt.NDArray[np.float32], platform: str, consumed: Sequence[frozenset[str]]) -> None:
        """Set ``scores[b, row of item]`` to -inf for every consumed item of ``platform``, in one scatter."""
        rows_of = self.catalog.rows_of(platform)
        for b, items in enumerate(consumed):
            if items:
                cols = np.fromiter((rows_of.get(item, -1) for item in items), np.int64, len(items))
                scores[b, cols[cols >= 0]] = -np.inf

    def _add_cooc_row(
        self,
        row: npt.NDArray[np.float32],
        platform: str,
        seq: Sequence[str],
        n: int,
        w: npt.NDArray[np.float64],
        last_buf: npt.NDArray[np.float32],
        window_buf: npt.NDArray[np.float32],
        knn_buf: npt.NDArray[np.float32],
    ) -> None:
        """Add the three weighted co-occurrence features to ``row``, touching only their
        non-zero rows (the zeroed scratch buffers are left zeroed again)."""
        touched: list[npt.NDArray[np.int64]] = []
        for k, item in enumerate(reversed(seq[-KNN_HISTORY:])):
            nb = self.cooc.get(item, {}).get(platform)
            if nb is None or not nb.pos:
                continue
            rows, vals = nb.arrays()
            keep = rows < n
            rows, vals = rows[keep], vals[keep]
            touched.append(rows)
            inv = np.float32(1.0 / math.sqrt(self.src_count.get(item, 1.0)))
            if k == 0:
                last_buf[rows] += vals  # rows of one neighbour list are distinct
            if k < SEQ_FEATURE:
                window_buf[rows] += vals * (inv / np.float32(k + 1))
            knn_buf[rows] += vals * inv
        if not touched:
            return
        cols = np.concatenate(touched)
        # ``a[cols] += v`` with repeated cols adds once per distinct col: exactly what is wanted here
        row[cols] += (
            np.float32(w[3]) * np.log1p(last_buf[cols])
            + np.float32(w[4]) * np.log1p(window_buf[cols])
            + np.float32(w[7]) * np.log1p(knn_buf[cols] * self.inv_sqrt_counts(platform, n, cols))
        )
        last_buf[cols] = 0.0
        window_buf[cols] = 0.0
        knn_buf[cols] = 0.0

    def features(self, req: RankRequest, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """(len(rows), F) feature matrix for the given rows of the request's platform."""
        cat = self.catalog
        n = cat.size(req.platform)
        V = cat.mats[req.platform][rows]
        f = np.zeros((len(rows), len(FEATURES)), np.float64)
        last = cat.vector(req.seq[-1]) if req.seq else None
        for j, vec in enumerate((req.fused, req.own, last)):
            if vec is not None:
                f[:, j] = V @ vec
        self._cooc_features(req.platform, req.seq, rows, f)
        pop = self.pop.get(req.platform)
        if pop is not None:
            ok = rows < pop.shape[1]
            decay = 0.5 ** ((self.pop_ts - self.pop_ref) / np.array(self.pop_half_lives_s))
            f[ok, 5:7] = np.log1p(pop[:, rows[ok]] * decay[:, None]).astype(np.float32).T  # as pop_features
        new = self.new_rows(req.platform, rows)
        f[:, NEW] = new
        f[:, NEW_FUSED] = new * f[:, 0]
        f[:, NEW_LAST] = new * f[:, 2]
        return f

    # ----------------------------------------------------------------------------- learning

    def observe(self, req: RankRequest, item_id: str, ts: float, positive: bool) -> None:
        """Test-then-train on one event; ``req`` is the person's state just before the event."""
        where = self.catalog.row.get(item_id)
        if where is None:
            return
        platform, row = where
        self.learned += 1
        self.unpublished += 1
        if not positive:
            return
        self.positives += 1
        if (req.fused is not None or req.seq) and self.positives % self.train_every == 0:
            self._sgd(req, row)
        for k, prev in enumerate(reversed(req.seq[-WINDOW:])):
            prev_where = self.catalog.row.get(prev)
            if prev_where is None or prev == item_id:
                continue
            inc = 1.0 / (k + 1)
            self._add_cooc(prev, platform, row, inc)
            self._add_cooc(item_id, prev_where[0], prev_where[1], BACKWARD * inc)
        self._add_pop(platform, row, ts)

    def _add_cooc(self, src: str, platform: str, row: int, inc: float) -> None:
        self.cooc.setdefault(src, {}).setdefault(platform, _Neighbours()).add(row, inc)
        self.src_count[src] = self.src_count.get(src, 0.0) + inc

    def _add_pop(self, platform: str, row: int, ts: float) -> None:
        """Time-decayed counts, stored scaled to ``pop_ref`` (2^((ts - ref)/hl)), renormalised lazily."""
        hl = np.array(self.pop_half_lives_s)
        if not np.isfinite(self.pop_ref):
            self.pop_ref = ts
        if (ts - self.pop_ref) / hl.min() > 400:  # keep the scaled values far from overflow
            k = 0.5 ** ((ts - self.pop_ref) / hl)
            for pop in self.pop.values():
                pop *= k[:, None]
            self.pop_ref = ts
        n = self.catalog.size(platform)
        pop = self.pop.get(platform)
        if pop is None or pop.shape[1] < n:
            grown = np.zeros((2, max(n, 64, 2 * (pop.shape[1] if pop is not None else 0))), np.float64)
            if pop is not None:
                grown[:, : pop.shape[1]] = pop
            pop = self.pop[platform] = grown
        pop[:, row] += 2.0 ** ((ts - self.pop_ref) / hl)
        counts = self.counts.get(platform)
        if counts is None or len(counts) < pop.shape[1]:
            grown_counts = np.zeros(pop.shape[1], np.float64)
            if counts is not None:
                grown_counts[: len(counts)] = counts
            counts = self.counts[platform] = grown_counts
        counts[row] += 1.0
        self.pop_ts = max(self.pop_ts, ts)
        self.pop_version += 1

    def interaction_counts(self, platform: str, item_ids: Sequence[str]) -> tuple[npt.NDArray[np.float64], float]:
        """Long-half-life decayed interaction counts of ``item_ids`` on ``platform`` and their platform total
        (what exploration and novelty treat as "how often seen")."""
        pop = self.pop_features(platform)
        counts = np.zeros(len(item_ids), np.float64)
        if pop is None:
            return counts, 0.0
        rows_of = self.catalog.rows_of(platform)
        rows = np.fromiter((rows_of.get(i, -1) for i in item_ids), np.int64, len(item_ids))
        ok = (rows >= 0) & (rows < pop.shape[1])
        counts[ok] = np.expm1(pop[1, rows[ok]].astype(np.float64))
        return counts, float(np.expm1(pop[1].astype(np.float64)).sum())

    def pop_features(self, platform: str) -> npt.NDArray[np.float32] | None:
        """(2, n) log1p of the decayed counts as of the newest learned event (cached per version)."""
        cached = self._pop_cache.get(platform)
        if cached is not None and cached[0] == self.pop_version:
            return cached[1]
        pop = self.pop.get(platform)
        if pop is None:
            return None
        k = 0.5 ** ((self.pop_ts - self.pop_ref) / np.array(self.pop_half_lives_s))
        feats = np.log1p(pop * k[:, None]).astype(np.float32)
        self._pop_cache[platform] = (self.pop_version, feats)
        return feats

    def _negative_sampler(self, platform: str, n: int) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64]]:
        """``(cdf of the popularity draw or None, proposal q over the n rows)`` as of the last publication.

        Rebuilt once per published model rather than per step: building a cdf over the catalog per
        event cost more than the step itself, and popularity moves little within one publication.
        """
        key = (self.published_version, n)
        cached = self._sampler.get(platform)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        q_uniform = np.full(n, 1.0 / n)
        pop = self.pop_features(platform)
        weights = np.zeros(n)
        if pop is not None and pop.shape[1] >= 1:
            m = min(n, pop.shape[1])
            weights[:m] = np.expm1(pop[1, :m].astype(np.float64))  # long-half-life counts
        total = weights.sum()
        if total > 0:
            q_pop = weights / total
            cdf, q = np.cumsum(q_pop), 0.5 * q_uniform + 0.5 * q_pop
        else:
            cdf, q = None, q_uniform
        self._sampler[platform] = (key, cdf, q)
        return cdf, q

    def _sgd(self, req: RankRequest, row: int) -> None:
        """One Adagrad step on the sampled softmax of the true item against sampled items.

        Negatives come half uniformly, half by published popularity (the hard ones); the logits are
        corrected by ``-log Q`` (sampled softmax), so the step follows the full-catalog softmax.
        """
        n = self.catalog.size(req.platform)
        if n < 2:
            return
        alive = self.catalog.alive[req.platform][:n]
        half = self.negatives // 2
        cdf, q = self._negative_sampler(req.platform, n)
        if cdf is not None:
            by_pop = np.minimum(np.searchsorted(cdf, self.rng.random(self.negatives - half) * cdf[-1]), n - 1)
            neg = np.concatenate([self.rng.integers(0, n, size=half), by_pop])
        else:
            neg = self.rng.integers(0, n, size=self.negatives)
        neg = neg[(neg != row) & alive[neg]]
        rows = np.concatenate([[row], neg]).astype(np.int64)
        f = self.features(req, rows)
        w = self.weights.get(req.platform)
        if w is None:
            w = self.weights[req.platform] = self.weights_of(req.platform).copy()
            self.grad_sq[req.platform] = np.full(len(FEATURES), INITIAL_GRAD_SQ)
        s = f @ w
        if self.hard:
            # the softmax over the positive and the negatives currently ranked highest: the top of
            # the list is what Recall/NDCG@K see, so that is where the weights are fitted
            keep = np.concatenate([[0], 1 + np.argsort(-s[1:], kind="stable")[: self.hard]])
            f, s = f[keep], s[keep]
        else:
            s[1:] -= np.log(q[neg] * len(neg))  # sampled-softmax correction
        s -= s.max()
        p = np.exp(s)
        p /= p.sum()
        grad = p @ f - f[0]  # d(-log softmax[0]) / dw
        g2 = self.grad_sq[req.platform]
        g2 += grad * grad
        w -= self.lr * grad / np.sqrt(g2)

    def maybe_publish(self) -> bool:
        if self.unpublished < self.publish_every:
            return False
        self.publish()
        return True

    def publish(self) -> None:
        """Hand the live weights to the ranker (statistics are live: they are counts, not fitted)."""
        self.pub_weights = {p: w.copy() for p, w in self.weights.items()}
        self.context.publish()
        self.unpublished = 0
        self.published_version += 1

    # ----------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Tensors and metadata of everything learned (co-occurrence keyed by item ids)."""
        self.publish()
        names = sorted({s for s in self.cooc} | {i for p in self.catalog.ids.values() for i in p})
        index = {n: i for i, n in enumerate(names)}
        src, dst, val = [], [], []
        for s, by_platform in self.cooc.items():
            for platform, nb in by_platform.items():
                rows, vals = nb.arrays()
                ids = self.catalog.ids[platform]
                for r, v in zip(rows.tolist(), vals.tolist()):
                    src.append(index[s])
                    dst.append(index[ids[r]])
                    val.append(v)
        tensors: dict[str, np.ndarray] = {
            "cooc_src": np.array(src, np.int64),
            "cooc_dst": np.array(dst, np.int64),
            "cooc_val": np.array(val, np.float32),
        }
        platforms = sorted(set(self.weights) | set(self.pop))
        for p in platforms:
            if p in self.weights:
                tensors[f"weights.{p}"] = self.weights[p]
                tensors[f"grad_sq.{p}"] = self.grad_sq[p]
            if p in self.pop:
                pop = self.pop[p]
                n = self.catalog.size(p)
                tensors[f"pop.{p}"] = pop[:, :n].copy()
                tensors[f"pop_ids_idx.{p}"] = np.array([index[i] for i in self.catalog.ids[p][: pop[:, :n].shape[1]]], np.int64)
                tensors[f"count.{p}"] = self.counts[p][: pop[:, :n].shape[1]].copy()
        context_tensors, context_meta = self.context.state()
        tensors.update(context_tensors)
        meta = {
            **context_meta,
            "features": json.dumps(FEATURES),
            "items": json.dumps(names),
            "platforms": json.dumps(platforms),
            "pop_ts": repr(self.pop_ts),
            "pop_ref": repr(self.pop_ref),
            "learned": str(self.learned),
            "version": str(self.published_version),
        }
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        saved = json.loads(meta["features"])
        unknown = sorted(set(saved) - set(FEATURES))
        if unknown:
            raise CheckpointError(f"checkpoint has features this version does not know: {unknown} (it knows {list(FEATURES)})")
        names = json.loads(meta["items"])
        self.cooc, self.src_count = {}, {}
        for s, d, v in zip(tensors["cooc_src"].tolist(), tensors["cooc_dst"].tolist(), tensors["cooc_val"].tolist()):
            where = self.catalog.row.get(names[d])
            if where is None:
                continue
            self.cooc.setdefault(names[s], {}).setdefault(where[0], _Neighbours()).add(where[1], v)
            self.src_count[names[s]] = self.src_count.get(names[s], 0.0) + v
        self.weights, self.grad_sq, self.pop, self.counts = {}, {}, {}, {}
        for p in json.loads(meta["platforms"]):
            if f"weights.{p}" in tensors:
                # by name: a checkpoint of an earlier feature set starts the features it lacks afresh
                self.weights[p] = _by_feature(tensors[f"weights.{p}"], saved, INITIAL_WEIGHTS)
                self.grad_sq[p] = _by_feature(tensors[f"grad_sq.{p}"], saved, np.full(len(FEATURES), INITIAL_GRAD_SQ))
            if f"pop.{p}" in tensors:
                pop = np.zeros((2, max(self.catalog.size(p), 64)), np.float64)
                counts = np.zeros(pop.shape[1], np.float64)
                for j, idx in enumerate(tensors[f"pop_ids_idx.{p}"].tolist()):
                    where = self.catalog.row.get(names[idx])
                    if where is not None and where[0] == p:
                        pop[:, where[1]] = tensors[f"pop.{p}"][:, j]
                        counts[where[1]] = tensors[f"count.{p}"][j]
                self.pop[p], self.counts[p] = pop, counts
        self.pop_ts = float(meta["pop_ts"])
        self.learned = int(meta["learned"])
        self.pop_ref = float(meta["pop_ref"])
        self.pop_version += 1
        self._sampler = {}
        self.unpublished = 0
        self.pub_weights = {p: w.copy() for p, w in self.weights.items()}
        self.context.load(tensors, meta)
        self.published_version = int(meta["version"])

    def save_checkpoint(self, directory: str | Path, manifest: dict[str, object] | None = None) -> Path:
        """Write ``learner.safetensors`` + ``manifest.json`` atomically into ``directory``."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors, meta = self.state_dict()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
        os.close(fd)
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=meta)
        os.replace(tmp, directory / "learner.safetensors")
        info = {"features": list(FEATURES), "learned_events": self.learned, "version": self.published_version, **(manifest or {})}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh, indent=2, default=str)
        os.replace(tmp, directory / "manifest.json")
        return directory / "learner.safetensors"

    def load_checkpoint(self, directory: str | Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote; the catalog must already hold the items."""
        from safetensors import safe_open

        path = Path(directory) / "learner.safetensors"
        with safe_open(str(path), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        self.load_state_dict(tensors, meta)

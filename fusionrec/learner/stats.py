"""Interaction statistics learned from the stream: popularity, interaction counts, co-occurrence.

They are counts, not fitted parameters, so they are updated by adding: the serving path records what
each positive event adds (a few list appends), and :meth:`InteractionStats.publish` applies the
recorded additions in array operations and hands the ranker a consistent view.  Between two
publications the ranker sees the statistics as of the last one (at most ``learn_publish_every`` events
old), which also keeps an event out of its own training features (no label leak).

Co-occurrence, per platform, is a sparse item × item matrix ``C[j, i]``: ``i`` came within
``WINDOW`` positive items after ``j`` in someone's sequence (``1/(k+1)`` for the k-th previous item,
and ``BACKWARD/(k+1)`` the other way round).  It is held as two CSR matrices, a large ``base`` and a
small ``recent``: a publication merges the new additions into ``recent`` (cost ∝ its size) and folds
``recent`` into ``base`` only when it has grown to a quarter of it, so the cost per event stays flat
as the matrix grows (an LSM tree with two levels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from fusionrec.learner.csr_add import add_triples
from fusionrec.learner.csr_cut import cut_rows

__all__ = ["InteractionStats", "PlatformStats", "Cooc", "WINDOW", "BACKWARD", "POP_HALF_LIVES_S"]

WINDOW = 5
"""Previous positive items of the same platform that an item co-occurs with."""
BACKWARD = 0.5
"""Weight of the reverse direction (i after j also counts j near i, less)."""
POP_HALF_LIVES_S = (7 * 86400.0, 365 * 86400.0)
"""Half-lives of the short and the long popularity."""
MERGE_SHARE = 0.25

F64 = npt.NDArray[np.float64]


def _empty(n: int) -> sp.csr_matrix:
    return sp.csr_matrix((n, n), dtype=np.float32)


class Cooc:
    """One platform's co-occurrence matrix as ``base + recent`` (see the module docstring).

    The ranker reads ``served`` instead of ``base``: each row cut to its ``neighbours`` largest values
    (an item's strongest co-occurrences carry its signal; a popular item's thousands of weak ones cost
    a sparse product per request and add little).  ``base`` keeps every count (checkpoints, folding).
    """

    def __init__(self, neighbours: int = 0) -> None:
        self.neighbours = neighbours
        self.base = _empty(0)
        self.served = self.base
        self.recent = _empty(0)

    @property
    def n(self) -> int:
        return self.base.shape[0]

    @property
    def nnz(self) -> int:
        return self.base.nnz + self.recent.nnz

    def add(self, n: int, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64], val: npt.NDArray[np.float32]) -> None:
        """Add ``val`` at ``(src, dst)`` (repeats sum) and grow to ``n`` rows; a new object each time
        the matrices change, so a reader holding the old ones keeps a consistent view."""
        if n > self.n:
            self.base = _resized(self.base, n)
            self.served = _resized(self.served, n)
            self.recent = _resized(self.recent, n)
        if len(src):
            self.recent = add_triples(self.recent, src, dst, val)
        if self.recent.nnz > MERGE_SHARE * max(self.base.nnz, 4096):
            self.base = (self.base + self.recent).tocsr()
            self.served = strongest(self.base, self.neighbours)
            self.recent = _empty(n)

    def restore(self, n: int, *parts: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]) -> None:
        """Set ``base`` (and ``recent``, when a second triple is given) from ``(src, dst, val)`` triples."""
        self.base = _from_triples(n, *parts[0]) if parts else _empty(n)
        self.recent = _from_triples(n, *parts[1]) if len(parts) > 1 else _empty(n)
        self.served = strongest(self.base, self.neighbours)

    def rows_times(self, h: sp.csr_matrix) -> sp.csr_matrix:
        """``h @ C`` (``h`` has ``n`` columns): weighted sums of rows of C."""
        out = h @ self.base
        if self.recent.nnz:
            out = out + h @ self.recent
        return out.tocsr()

    def triples(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Every non-zero as (row, column, value) (checkpoints)."""
        m = (self.base + self.recent).tocoo()
        return m.row.astype(np.int64), m.col.astype(np.int64), m.data.astype(np.float32)


def strongest(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """``m`` with each row cut to its ``k`` largest values, the lower column winning a tie (``k`` <= 0:
    all of them)."""
    if k <= 0 or np.diff(m.indptr).max(initial=0) <= k:
        return m
    if not m.has_sorted_indices:
        m = m.sorted_indices()
    return cut_rows(m, k)


def _from_triples(n: int, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64], val: npt.NDArray[np.float32]) -> sp.csr_matrix:
    return sp.csr_matrix((val, (src, dst)), shape=(n, n), dtype=np.float32)


def _resized(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    m = m.copy()
    m.resize((n, n))
    return m


@dataclass
class PlatformStats:
    """Live statistics of one platform, indexed by store row."""

    pop: F64 = field(default_factory=lambda: np.zeros((2, 0)))  # scaled by 2^((ts - ref)/hl), see InteractionStats
    counts: F64 = field(default_factory=lambda: np.zeros(0))  # positive interactions (not decayed)
    src_total: F64 = field(default_factory=lambda: np.zeros(0))  # Σ co-occurrence added out of each row
    cooc: Cooc = field(default_factory=Cooc)

    def grow(self, n: int) -> None:
        if n <= len(self.counts):
            return
        cap = max(n, 2 * len(self.counts), 64)
        self.pop = np.pad(self.pop, ((0, 0), (0, cap - self.pop.shape[1])))
        self.counts = np.pad(self.counts, (0, cap - len(self.counts)))
        self.src_total = np.pad(self.src_total, (0, cap - len(self.src_total)))


@dataclass
class _Pending:
    rows: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    val: list[float] = field(default_factory=list)


class InteractionStats:
    """Popularity, counts and co-occurrence of every platform; additions are applied by :meth:`publish`."""

    def __init__(self, half_lives_s: tuple[float, float] = POP_HALF_LIVES_S, neighbours: int = 0) -> None:
        self.half_lives_s = np.array(half_lives_s)
        self.neighbours = neighbours
        self.platforms: dict[str, PlatformStats] = {}
        self.pop_ts = float("-inf")  # newest event applied
        self.pop_ref = float("-inf")  # time the stored popularity is scaled to
        self._pending: dict[str, _Pending] = {}
        self.version = 0

    def platform(self, name: str) -> PlatformStats:
        stats = self.platforms.get(name)
        if stats is None:
            stats = self.platforms[name] = PlatformStats(cooc=Cooc(self.neighbours))
        return stats

    # ---------------------------------------------------------------------------- recording

    def record(self, platform: str, row: int, ts: float, previous: list[int]) -> None:
        """A positive event on ``row`` of ``platform``; ``previous`` are the person's earlier positive
        items of that platform (rows, newest first)."""
        pending = self._pending.get(platform)
        if pending is None:
            pending = self._pending[platform] = _Pending()
        pending.rows.append(row)
        pending.ts.append(ts)
        for k, prev in enumerate(previous[:WINDOW]):
            if prev == row:
                continue
            inc = 1.0 / (k + 1)
            pending.src += (prev, row)
            pending.dst += (row, prev)
            pending.val += (inc, BACKWARD * inc)

    @property
    def unapplied(self) -> int:
        return sum(len(p.rows) for p in self._pending.values())

    # ---------------------------------------------------------------------------- applying

    def publish(self, sizes: dict[str, int]) -> None:
        """Apply every recorded addition; ``sizes`` are the platforms' row counts in the item store."""
        pending, self._pending = self._pending, {}
        for platform, n in sizes.items():
            stats = self.platform(platform)
            stats.grow(n)
            p = pending.get(platform)
            if p is not None and p.rows:
                self._apply_pop(stats, np.array(p.rows, np.int64), np.array(p.ts))
                src, dst = np.array(p.src, np.int64), np.array(p.dst, np.int64)
                val = np.array(p.val, np.float32)
                np.add.at(stats.src_total, src, val)
                stats.cooc.add(n, src, dst, val)
            else:
                stats.cooc.add(n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        self.version += 1

    def _apply_pop(self, stats: PlatformStats, rows: npt.NDArray[np.int64], ts: F64) -> None:
        hl = self.half_lives_s
        newest = float(ts.max())
        if not math.isfinite(self.pop_ref):
            self.pop_ref = float(ts.min())
        if (newest - self.pop_ref) / hl.min() > 400:  # keep the scaled values far from overflow
            k = 0.5 ** ((newest - self.pop_ref) / hl)
            for other in self.platforms.values():
                other.pop *= k[:, None]
            self.pop_ref = newest
        for j in range(2):
            np.add.at(stats.pop[j], rows, 2.0 ** ((ts - self.pop_ref) / hl[j]))
        np.add.at(stats.counts, rows, 1.0)
        self.pop_ts = max(self.pop_ts, newest)

    def pop_features(self, platform: str, n: int) -> npt.NDArray[np.float32]:
        """(2, n) ``log1p`` of the short and long decayed counts as of the newest applied event."""
        stats = self.platform(platform)
        stats.grow(n)
        if not math.isfinite(self.pop_ts):
            return np.zeros((2, n), np.float32)
        k = 0.5 ** ((self.pop_ts - self.pop_ref) / self.half_lives_s)
        return np.log1p(stats.pop[:, :n] * k[:, None]).astype(np.float32)

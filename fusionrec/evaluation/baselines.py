"""Baselines computed in the same replay, on the same targets with the same exclusions.

Each sees the stream exactly as the model does: ``rank`` at a target, then ``learn`` the event.

- ``popularity``: time-decayed interaction counts per platform (half-life 30 days);
- ``cooccurrence``: ItemKNN, cosine-normalised co-occurrence of items in persons' histories (last 30
  items of a person), score = Σ over the person's history items;
- ``text_mean``: the mean LLM vector of the person's history, cosine to every item; no learning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fusionrec.items import ItemStore as Catalog

__all__ = ["BaselineRequest", "Baseline", "Popularity", "CoOccurrence", "TextMean", "top_items"]


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
class BaselineRequest:
    person: str
    platform: str
    ts: float
    consumed: frozenset[str]


def top_items(scores: npt.NDArray[np.floating], catalog: Catalog, platform: str, consumed: frozenset[str], k: int) -> list[str]:
    """Ids of the ``k`` best live, unconsumed rows of ``platform`` (ties broken by row)."""
    n = catalog.size(platform)
    scores = np.asarray(scores[:n], dtype=np.float64).copy()
    scores[~catalog.alive[platform][:n]] = -np.inf
    for item in consumed:
        where = catalog.row.get(item)
        if where is not None and where[0] == platform:
            scores[where[1]] = -np.inf
    live = int(np.isfinite(scores).sum())
    kk = min(k, live)
    if kk <= 0:
        return []
    top = np.argpartition(-scores, kk - 1)[:kk] if kk < n else np.arange(n)
    top = top[np.lexsort((top, -scores[top]))]
    ids = catalog.ids[platform]
    return [ids[r] for r in top[:kk]]


class Baseline:
    name = "baseline"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def learn(self, person: str, item_id: str, ts: float, positive: bool) -> None:
        raise NotImplementedError

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        raise NotImplementedError


class Popularity(Baseline):
    name = "popularity"

    def __init__(self, catalog: Catalog, half_life_s: float = 30 * 86400.0) -> None:
        super().__init__(catalog)
        self.half_life_s = half_life_s
        self.counts: dict[str, npt.NDArray[np.float64]] = {}
        self.ts: dict[str, float] = {}

    def _decayed(self, platform: str, now: float) -> npt.NDArray[np.float64]:
        n = self.catalog.size(platform)
        c = self.counts.get(platform)
        if c is None or len(c) < n:
            grown = np.zeros(max(n, 64))
            if c is not None:
                grown[: len(c)] = c
            c = self.counts[platform] = grown
        last = self.ts.get(platform, now)
        if now > last:
            c *= 0.5 ** ((now - last) / self.half_life_s)
        self.ts[platform] = max(now, last)
        return c

    def learn(self, person: str, item_id: str, ts: float, positive: bool) -> None:
        where = self.catalog.row.get(item_id)
        if where is None or not positive:
            return
        c = self._decayed(where[0], ts)
        c[where[1]] += 0.5 ** (max(self.ts[where[0]] - ts, 0.0) / self.half_life_s)

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        out = []
        for r in requests:
            c = self._decayed(r.platform, max(r.ts, self.ts.get(r.platform, r.ts)))
            out.append(top_items(c, self.catalog, r.platform, r.consumed, k))
        return out


class CoOccurrence(Baseline):
    name = "cooccurrence"
    HISTORY = 30

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self.history: dict[str, list[str]] = {}
        self.cooc: dict[str, dict[str, _Neighbours]] = {}
        self.count: dict[str, float] = {}
        self.pop = Popularity(catalog, half_life_s=float("inf"))  # tie-break only

    def learn(self, person: str, item_id: str, ts: float, positive: bool) -> None:
        where = self.catalog.row.get(item_id)
        if where is None or not positive:
            return
        hist = self.history.setdefault(person, [])
        if item_id in hist:
            return
        for prev in hist[-self.HISTORY :]:
            pw = self.catalog.row.get(prev)
            if pw is None:
                continue
            self.cooc.setdefault(prev, {}).setdefault(where[0], _Neighbours()).add(where[1], 1.0)
            self.cooc.setdefault(item_id, {}).setdefault(pw[0], _Neighbours()).add(pw[1], 1.0)
        hist.append(item_id)
        self.count[item_id] = self.count.get(item_id, 0.0) + 1.0
        self.pop.learn(person, item_id, ts, positive)

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        out = []
        for r in requests:
            n = self.catalog.size(r.platform)
            acc = np.zeros(n)
            for prev in self.history.get(r.person, [])[-self.HISTORY :]:
                nb = self.cooc.get(prev, {}).get(r.platform)
                if nb is None:
                    continue
                rows, vals = nb.arrays()
                acc[rows] += vals / math.sqrt(self.count.get(prev, 1.0))
            pop = self.pop._decayed(r.platform, r.ts)[:n]
            scores = acc / np.sqrt(np.maximum(pop, 1.0)) + 1e-9 * pop
            out.append(top_items(scores, self.catalog, r.platform, r.consumed, k))
        return out


class TextMean(Baseline):
    name = "text_mean"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self.sums: dict[str, npt.NDArray[np.float64]] = {}

    def learn(self, person: str, item_id: str, ts: float, positive: bool) -> None:
        vec = self.catalog.vector(item_id)
        if vec is None or not positive:
            return
        s = self.sums.get(person)
        self.sums[person] = vec.astype(np.float64) if s is None else s + vec

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        out = []
        for r in requests:
            s = self.sums.get(r.person)
            if s is None:
                out.append([])
                continue
            n = self.catalog.size(r.platform)
            scores = self.catalog.mats[r.platform][:n] @ s.astype(np.float32)
            out.append(top_items(scores, self.catalog, r.platform, r.consumed, k))
        return out

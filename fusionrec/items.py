"""The item store: every item's id, platform, text vector and 64-bit hash, kept once.

One matrix per platform, whose rows never move (a deleted row is dead; an item that comes back gets
its row back), so every other structure can address items by ``(platform, row)``: the learner's
statistics, the candidate index (fed by the store on every change), the person states of a batch.
Person state persists items as 64-bit hashes (portable across workers); the store maps them back.

    >>> import numpy as np
    >>> store = ItemStore(2)
    >>> store.upsert(["a", "b"], ["shop", "shop"], np.array([[1, 0], [0, 1]], np.float32))
    >>> store.platform_of("b"), store.row_of("b"), len(store)
    ('shop', 1, 2)
    >>> store.delete(["a"]), "a" in store, store.live("shop")
    (1, False, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from fusionrec.errors import IndexError_
from fusionrec.hashing import stable_hash
from fusionrec.protocols import CandidateIndexT, MatrixView

__all__ = ["ItemStore", "PlatformItems", "IndexFactory"]

Vectors = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]
Hashes = npt.NDArray[np.uint64]

IndexFactory = Callable[[int, MatrixView], CandidateIndexT]
"""``(dim, view of the platform's matrix) -> candidate index`` (the composition root supplies it)."""


class PlatformItems:
    """The items of one platform: ids by row, vectors, hashes, liveness, and its candidate index."""

    def __init__(self, name: str, dim: int, index_factory: IndexFactory | None) -> None:
        self.name = name
        self.dim = dim
        self.ids: list[str] = []
        self.names = np.zeros(0, object)  # the ids again, as an array: many picked by one fancy index
        self.vectors = np.zeros((0, dim), np.float32)
        self.hashes = np.zeros(0, np.uint64)
        self.alive = np.zeros(0, bool)
        self.row_of: dict[str, int] = {}
        self.live = 0
        self.index = index_factory(dim, self.view) if index_factory is not None else None

    @property
    def n(self) -> int:
        return len(self.ids)

    def view(self) -> tuple[Vectors, npt.NDArray[np.bool_]]:
        n = self.n
        return self.vectors[:n], self.alive[:n]

    def _reserve(self, rows: int) -> None:
        cap = len(self.alive)
        if rows <= cap:
            return
        cap = max(rows, 2 * cap, 64)
        for name, fill in (("vectors", 0.0), ("hashes", 0), ("alive", False), ("names", None)):
            old = getattr(self, name)
            new = np.full((cap, *old.shape[1:]), fill, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def put(self, item_ids: Sequence[str], vectors: Vectors) -> Rows:
        rows = np.empty(len(item_ids), np.int64)
        for j, item in enumerate(item_ids):
            row = self.row_of.get(item)
            if row is None:
                row = len(self.ids)
                self.ids.append(item)
                self.row_of[item] = row
            rows[j] = row
        self._reserve(len(self.ids))
        self.names[rows] = item_ids
        self.vectors[rows] = vectors
        self.hashes[rows] = np.fromiter((stable_hash(i) for i in item_ids), np.uint64, len(item_ids))
        self.live += int((~self.alive[rows]).sum())
        self.alive[rows] = True
        if self.index is not None:
            self.index.add(rows, vectors)
        return rows

    def copy(self) -> PlatformItems:
        """The rows as they are now, without the index (what a reader in another thread may keep)."""
        n = self.n
        twin = PlatformItems(self.name, self.dim, None)
        twin.ids, twin.row_of, twin.live = list(self.ids), dict(self.row_of), self.live
        twin.names, twin.vectors = self.names[:n].copy(), self.vectors[:n].copy()
        twin.hashes, twin.alive = self.hashes[:n].copy(), self.alive[:n].copy()
        return twin

    def drop(self, item_ids: Sequence[str]) -> None:
        rows = np.array([self.row_of[i] for i in item_ids], np.int64)
        self.live -= int(self.alive[rows].sum())
        self.alive[rows] = False
        if self.index is not None:
            self.index.remove(rows)


class ItemStore:
    """Items of every platform (see the module docstring); ``version`` changes with every change."""

    def __init__(self, dim: int, index_factory: IndexFactory | None = None) -> None:
        self.dim = dim
        self.index_factory = index_factory
        self.platforms: dict[str, PlatformItems] = {}
        self._where: dict[str, str] = {}  # live item id -> platform
        self._by_hash: dict[int, tuple[str, int]] = {}  # hash of a live item -> (platform, row)
        self._rows_by_hash: dict[str, dict[int, int]] = {}  # the same per platform: hash -> row
        self._sorted: tuple[int, Hashes, Rows, Rows] | None = None  # (version, hashes sorted, codes, rows): locate()
        self.version = 0

    def snapshot(self) -> ItemStore:
        """A copy of the items as they are now, without candidate indexes: a training thread reads it
        while the event loop goes on changing this store (rows, ids and hashes stay where they are)."""
        twin = ItemStore(self.dim)
        twin.platforms = {p: items.copy() for p, items in self.platforms.items()}
        twin._where, twin._by_hash = dict(self._where), dict(self._by_hash)
        twin._rows_by_hash = {p: dict(rows) for p, rows in self._rows_by_hash.items()}
        twin.version = self.version
        return twin

    # ------------------------------------------------------------------------------ changes

    def upsert(self, item_ids: Sequence[str], platforms: Sequence[str], vectors: Vectors) -> None:
        """Add items or replace their vectors; an item that moves to another platform leaves the old one."""
        vecs = np.asarray(vectors, np.float32)
        if vecs.ndim != 2 or vecs.shape != (len(item_ids), self.dim) or len(platforms) != len(item_ids):
            raise IndexError_(f"upsert needs one platform and one {self.dim}-d vector per item id, got {len(item_ids)} ids, {len(platforms)} platforms, vectors {vecs.shape}")
        last = {item: j for j, item in enumerate(item_ids)}  # an id repeated in one call: its last row wins
        moved = [i for i in last if self._where.get(i, platforms[last[i]]) != platforms[last[i]]]
        if moved:
            self.delete(moved)
        groups: dict[str, list[str]] = {}
        for item, j in last.items():
            groups.setdefault(platforms[j], []).append(item)
        for platform, items in groups.items():
            rows = self.platform(platform).put(items, vecs[[last[i] for i in items]])
            hashes = self.platforms[platform].hashes[rows].tolist()
            rows_by_hash = self._rows_by_hash.setdefault(platform, {})
            for item, row, h in zip(items, rows.tolist(), hashes):
                self._where[item] = platform
                before = self._by_hash.get(h)
                if before is not None and before[0] != platform:  # a hash names one live item, on one platform
                    self._rows_by_hash[before[0]].pop(h, None)
                self._by_hash[h] = (platform, row)
                rows_by_hash[h] = row
        self.version += 1

    def delete(self, item_ids: Sequence[str]) -> int:
        present = list(dict.fromkeys(i for i in item_ids if i in self._where))
        groups: dict[str, list[str]] = {}
        for item in present:
            groups.setdefault(self._where.pop(item), []).append(item)
            h = stable_hash(item)
            if (where := self._by_hash.pop(h, None)) is not None:
                self._rows_by_hash[where[0]].pop(h, None)
        for platform, items in groups.items():
            self.platforms[platform].drop(items)
        self.version += 1
        return len(present)

    def platform(self, name: str) -> PlatformItems:
        """The platform's items, created empty on first use."""
        items = self.platforms.get(name)
        if items is None:
            items = self.platforms[name] = PlatformItems(name, self.dim, self.index_factory)
        return items

    # ------------------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def platform_of(self, item_id: str) -> str | None:
        return self._where.get(item_id)

    def row_of(self, item_id: str) -> int | None:
        platform = self._where.get(item_id)
        return None if platform is None else self.platforms[platform].row_of[item_id]

    def where_hash(self, item_hash: int) -> tuple[str, int] | None:
        """``(platform, row)`` of the live item with this hash, None if there is none."""
        return self._by_hash.get(item_hash)

    def locate(self, hashes: Hashes) -> tuple[Rows, Rows]:
        """``(platform code, row)`` of each hash's live item, both -1 where there is none; a code indexes
        ``tuple(self.platforms)``.  One binary search per hash in a sorted table of the live items,
        rebuilt after a change: many hashes at once without a dictionary lookup each."""
        keys, codes, rows = self._sorted_table()
        if not len(keys):
            return np.full(len(hashes), -1, np.int64), np.full(len(hashes), -1, np.int64)
        at = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
        hit = keys[at] == hashes
        return np.where(hit, codes[at], -1), np.where(hit, rows[at], -1)

    def _sorted_table(self) -> tuple[Hashes, Rows, Rows]:
        if self._sorted is None or self._sorted[0] != self.version:
            parts = [(code, items, np.flatnonzero(items.alive[: items.n])) for code, items in enumerate(self.platforms.values())]
            keys = np.concatenate([items.hashes[rows] for _, items, rows in parts] or [np.zeros(0, np.uint64)])
            codes = np.concatenate([np.full(len(rows), code, np.int64) for code, _, rows in parts] or [np.zeros(0, np.int64)])
            rows = np.concatenate([rows for _, _, rows in parts] or [np.zeros(0, np.int64)])
            order = np.argsort(keys, kind="stable")
            self._sorted = (self.version, keys[order], codes[order], rows[order])
        return self._sorted[1:]

    def rows_of_hashes(self, platform: str, hashes: Sequence[int]) -> list[int]:
        """Rows of the live items of ``platform`` among ``hashes``, in order (others are skipped)."""
        rows = self._rows_by_hash.get(platform)
        if rows is None:
            return []
        return [r for r in map(rows.get, hashes) if r is not None]

    def vector(self, item_id: str) -> Vectors | None:
        platform = self._where.get(item_id)
        if platform is None:
            return None
        items = self.platforms[platform]
        return items.vectors[items.row_of[item_id]]

    def vectors_of(self, item_ids: Sequence[str]) -> Vectors:
        """The vectors of live items, one row per id (unknown ids are an error)."""
        out = np.empty((len(item_ids), self.dim), np.float32)
        for j, item in enumerate(item_ids):
            vec = self.vector(item)
            if vec is None:
                raise IndexError_(f"unknown item id {item!r}")
            out[j] = vec
        return out

    def live(self, platform: str) -> int:
        items = self.platforms.get(platform)
        return items.live if items is not None else 0

    # ----------------------------------------------- the Catalog surface the evaluator's baselines read

    def size(self, platform: str) -> int:
        """Rows of ``platform``, dead ones included (arrays over the platform are this long)."""
        items = self.platforms.get(platform)
        return items.n if items is not None else 0

    @property
    def ids(self) -> dict[str, list[str]]:
        return {p: items.ids for p, items in self.platforms.items()}

    @property
    def mats(self) -> dict[str, Vectors]:
        return {p: items.vectors for p, items in self.platforms.items()}

    @property
    def alive(self) -> dict[str, npt.NDArray[np.bool_]]:
        return {p: items.alive for p, items in self.platforms.items()}

    @property
    def row(self) -> Mapping[str, tuple[str, int]]:
        """Item id -> (platform, row) of every live item (a live view)."""
        return _RowView(self)


class _RowView(Mapping[str, tuple[str, int]]):
    def __init__(self, store: ItemStore) -> None:
        self._store = store

    def __getitem__(self, item_id: str) -> tuple[str, int]:
        platform = self._store.platform_of(item_id)
        if platform is None:
            raise KeyError(item_id)
        return platform, self._store.platforms[platform].row_of[item_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

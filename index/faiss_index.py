"""Exact inner-product item index on faiss, one sub-index ("shard") per platform.

Why one shard per platform: most queries ask for items of a single platform, and a per-platform flat
index answers them without scanning (or over-fetching past) every other platform's items.  Queries
over all platforms search every shard and merge.

On CPU each shard is an ``IndexIDMap2`` over ``IndexFlatIP`` with real ``remove_ids``.  On GPU a
``GpuIndexFlatIP`` cannot remove vectors, so deleted rows become tombstones that are filtered at
search time (with over-fetch) and the shard is rebuilt once they pass 20% of its rows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
import numpy.typing as npt

from fusionrec.errors import IndexError_, IndexNotReady
from fusionrec.protocols import Vectors

__all__ = ["ItemIndex", "resolve_device"]

IntIds = npt.NDArray[np.int64]

FORMAT = "fusionrec.item_index/1"
META_FILE = "meta.json"
VECTORS_FILE = "vectors.npy"
TOMBSTONE_LIMIT = 0.2
"""A GPU shard is rebuilt when more than this share of its rows are tombstones."""
GPU_MAX_K = 2048
"""Largest k a faiss GPU flat search accepts; larger fetches are answered from the host copy."""

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


# --------------------------------------------------------------------------------------- devices


def resolve_device(device: str) -> tuple[str, int]:
    """Map ``auto|cpu|cuda|cuda:N`` to ``("cpu", -1)`` or ``("cuda", N)``, checking faiss can do it."""
    if device == "cpu":
        return "cpu", -1
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "auto":
        return ("cuda", 0) if gpus > 0 else ("cpu", -1)
    if device == "cuda" or device.startswith("cuda:"):
        num = _gpu_number(device)
        if num >= gpus:
            raise IndexError_(f"device {device!r} asked for, but faiss sees {gpus} GPU(s); use 'cpu' or 'auto'")
        return "cuda", num
    raise IndexError_(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")


def _gpu_number(device: str) -> int:
    """Parse the N of ``cuda:N`` (``cuda`` alone is GPU 0)."""
    if device == "cuda":
        return 0
    tail = device.split(":", 1)[1]
    if not tail.isdigit():
        raise IndexError_(f"bad device {device!r}; valid: {', '.join(DEVICES)}")
    return int(tail)


# ---------------------------------------------------------------------------------------- shards


class _Shard(Protocol):
    """The vectors of one platform, keyed by int64 ids that the caller guarantees are new on add."""

    def __len__(self) -> int: ...

    def add(self, ids: IntIds, vecs: Vectors) -> None: ...

    def remove(self, ids: IntIds) -> None: ...

    def search(self, queries: Vectors, k: int) -> tuple[npt.NDArray[np.float32], IntIds]: ...

    def vectors(self, ids: IntIds) -> Vectors: ...

    def export(self) -> tuple[IntIds, Vectors]: ...


def set_search_threads(n: int) -> None:
    """OpenMP threads FAISS uses for CPU search (process-wide).

    On a 2-core machine shared with a broker and the event loop, one thread searches a batch of 512
    queries over 8k items about 3x faster than two (measured: 45 ms against 168 ms).
    """
    faiss.omp_set_num_threads(n)
    # micro-batches are often under faiss's BLAS threshold (20 queries), where this wheel's generic
    # kernels take ~2-10 ms per query against ~0.1-0.3 ms through BLAS
    faiss.cvar.distance_compute_blas_threshold = 1


FIRST_OVERFETCH = 64
"""Candidates fetched beyond ``k`` in the first pass of a search with exclusions."""


class _IdMapShard:
    """CPU shard: ``IndexIDMap2(IndexFlatIP)``, so removal is real and vectors can be read back."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._n = 0  # ntotal, kept here: each SWIG attribute read costs tens of microseconds per search

    def __len__(self) -> int:
        return self._n

    def add(self, ids: IntIds, vecs: Vectors) -> None:
        self._index.add_with_ids(vecs, ids)
        self._n = int(self._index.ntotal)

    def remove(self, ids: IntIds) -> None:
        self._index.remove_ids(ids)  # type: ignore[arg-type]  # faiss wraps arrays in an IDSelector
        self._n = int(self._index.ntotal)

    def search(self, queries: Vectors, k: int) -> tuple[npt.NDArray[np.float32], IntIds]:
        scores, ids = self._index.search(queries, min(k, len(self)))
        return scores, ids

    def vectors(self, ids: IntIds) -> Vectors:
        return np.asarray(self._index.reconstruct_batch(ids), dtype=np.float32).reshape(-1, self._dim)

    def export(self) -> tuple[IntIds, Vectors]:
        """Ids and vectors in storage order (so a reload searches identically, ties included)."""
        n = len(self)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)[:n]
        vecs = self._index.index.reconstruct_n(0, n) if n else np.empty((0, self._dim), np.float32)
        return ids, np.asarray(vecs, dtype=np.float32).reshape(n, self._dim)


class _TombstoneShard:
    """Shard over a positional flat index that cannot remove rows (``GpuIndexFlatIP``).

    A host copy of the rows (grown by doubling, so single-item upserts stay cheap) answers
    ``vectors``, feeds rebuilds, and serves searches whose ``k`` exceeds what the GPU allows.
    """

    def __init__(self, dim: int, make_flat: Callable[[], Any], *, max_k: int | None = GPU_MAX_K) -> None:
        self._dim = dim
        self._make_flat = make_flat
        self._max_k = max_k
        self._flat = make_flat()
        self._n = 0  # rows in the flat index, dead ones included
        self._vecs = np.empty((0, dim), dtype=np.float32)
        self._row_ids = np.empty(0, dtype=np.int64)
        self._alive = np.empty(0, dtype=bool)
        self._row_of: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def dead(self) -> int:
        """Rows still in the flat index whose item was deleted or replaced."""
        return self._n - len(self._row_of)

    def add(self, ids: IntIds, vecs: Vectors) -> None:
        start, end = self._n, self._n + len(ids)
        self._reserve(end)
        self._flat.add(vecs)
        self._vecs[start:end], self._row_ids[start:end], self._alive[start:end] = vecs, ids, True
        self._row_of.update(zip(ids.tolist(), range(start, end)))
        self._n = end

    def _reserve(self, rows: int) -> None:
        """Grow the host buffers geometrically to hold ``rows`` rows."""
        if rows <= len(self._row_ids):
            return
        cap = max(rows, 2 * len(self._row_ids), 64)
        vecs = np.empty((cap, self._dim), dtype=np.float32)
        row_ids = np.full(cap, -1, dtype=np.int64)
        alive = np.zeros(cap, dtype=bool)
        vecs[: self._n], row_ids[: self._n], alive[: self._n] = (
            self._vecs[: self._n],
            self._row_ids[: self._n],
            self._alive[: self._n],
        )
        self._vecs, self._row_ids, self._alive = vecs, row_ids, alive

    def remove(self, ids: IntIds) -> None:
        rows = [self._row_of.pop(i) for i in ids.tolist()]
        self._alive[rows] = False
        if self.dead > TOMBSTONE_LIMIT * self._n:
            self._rebuild()

    def _rebuild(self) -> None:
        """Drop the tombstones: a fresh flat index holding only the live rows, in their order."""
        keep = np.flatnonzero(self._alive[: self._n])
        vecs, row_ids = self._vecs[keep], self._row_ids[keep]
        self._flat, self._n = self._make_flat(), 0
        self._vecs, self._row_ids, self._alive = vecs[:0], row_ids[:0], np.empty(0, dtype=bool)
        self._row_of = {}
        if len(keep):
            self.add(row_ids, np.ascontiguousarray(vecs))

    def search(self, queries: Vectors, k: int) -> tuple[npt.NDArray[np.float32], IntIds]:
        """Over-fetch by the tombstone count so that dropping dead rows still leaves ``k``."""
        fetch = min(k + self.dead, self._n)
        if self._max_k is not None and fetch > self._max_k:
            return self._host_search(queries, min(k, len(self)))
        scores, rows = self._flat.search(queries, fetch)
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        live = valid & self._alive[safe]
        ids = np.where(live, self._row_ids[safe], -1)
        return np.where(live, scores, -np.inf).astype(np.float32), ids

    def _host_search(self, queries: Vectors, k: int) -> tuple[npt.NDArray[np.float32], IntIds]:
        """Exact top-``k`` on the host copy, for ``k`` past the GPU's limit."""
        live = np.flatnonzero(self._alive[: self._n])
        scores = queries @ self._vecs[live].T
        top = (
            np.argpartition(-scores, k - 1, axis=1)[:, :k]
            if k < len(live)
            else np.tile(np.arange(len(live)), (len(queries), 1))
        )
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        rows = live[np.take_along_axis(top, order, axis=1)]
        return np.take_along_axis(top_scores, order, axis=1).astype(np.float32), self._row_ids[rows]

    def vectors(self, ids: IntIds) -> Vectors:
        rows = [self._row_of[i] for i in ids.tolist()]
        return self._vecs[rows].copy()

    def export(self) -> tuple[IntIds, Vectors]:
        live = np.flatnonzero(self._alive[: self._n])
        return self._row_ids[live].copy(), self._vecs[live].copy()


# ----------------------------------------------------------------------------------------- index


class ItemIndex:
    """Exact inner-product search over unit-norm item vectors, filtered by platform and exclusions.

    Implements :class:`fusionrec.protocols.VectorIndexT`.  Item ids are strings; each is mapped to an
    int64 faiss id that stays fixed while the item lives (a replaced vector keeps its id).
    """

    def __init__(self, dim: int, *, device: str = "auto") -> None:
        if not isinstance(dim, int) or dim <= 0:
            raise IndexError_(f"dim must be a positive int, got {dim!r}")
        self._dim = dim
        self._device, self._gpu = resolve_device(device)
        self._gpu_res: Any = None
        self._shards: dict[str, _Shard] = {}
        self._key: dict[str, int] = {}
        self._name: dict[int, str] = {}
        self._platform: dict[str, str] = {}
        self._next_id = 0

    # ---------------------------------------------------------------- properties / container

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda:N``: where the vectors are searched."""
        return "cpu" if self._device == "cpu" else f"cuda:{self._gpu}"

    @property
    def platforms(self) -> list[str]:
        """Platforms that currently hold at least one item, sorted."""
        return sorted(p for p, s in self._shards.items() if len(s))

    def __len__(self) -> int:
        return len(self._key)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and item_id in self._key

    def platform_of(self, item_id: str) -> str | None:
        return self._platform.get(item_id)

    def count(self, platform: str | None = None) -> int:
        """Live items of ``platform`` (all platforms when ``None``)."""
        if platform is None:
            return len(self)
        shard = self._shards.get(platform)
        return len(shard) if shard is not None else 0

    # ----------------------------------------------------------------------------- mutation

    def upsert(self, item_ids: Sequence[str], platforms: Sequence[str], vectors: Vectors) -> None:
        """Add items, or replace the vector (and platform) of items already present.

        When an id repeats inside one call, its last row wins.
        """
        vecs = self._check_vectors(vectors, "vectors")
        if not (len(item_ids) == len(platforms) == len(vecs)):
            raise IndexError_(
                f"upsert needs as many platforms and vector rows as ids: got {len(item_ids)} ids, "
                f"{len(platforms)} platforms, {len(vecs)} rows"
            )
        last = self._last_rows(item_ids, platforms)
        present = [i for i in last if i in self._key]
        self._remove_from_shards(present)
        for item in last:
            if item not in self._key:
                self._key[item] = self._next_id
                self._name[self._next_id] = item
                self._next_id += 1
        for platform, items in _group(last, lambda i: platforms[last[i]]).items():
            rows = [last[i] for i in items]
            ids = np.fromiter((self._key[i] for i in items), dtype=np.int64, count=len(items))
            self._shard(platform).add(ids, np.ascontiguousarray(vecs[rows]))
            self._platform.update(dict.fromkeys(items, platform))

    def delete(self, item_ids: Sequence[str]) -> int:
        """Remove the given items; unknown ids are ignored.  Returns how many were removed."""
        present = list(dict.fromkeys(i for i in item_ids if i in self._key))
        self._remove_from_shards(present)
        for item in present:
            del self._name[self._key.pop(item)]
            del self._platform[item]
        return len(present)

    def vectors_of(self, item_ids: Sequence[str]) -> Vectors:
        """The stored vectors, one row per id in the order given."""
        unknown = [i for i in item_ids if i not in self._key]
        if unknown:
            raise IndexError_(f"unknown item id(s): {unknown[:5]!r}{' ...' if len(unknown) > 5 else ''}")
        out = np.empty((len(item_ids), self._dim), dtype=np.float32)
        for platform, positions in _group(range(len(item_ids)), lambda p: self._platform[item_ids[p]]).items():
            ids = np.fromiter((self._key[item_ids[p]] for p in positions), dtype=np.int64, count=len(positions))
            out[positions] = self._shards[platform].vectors(ids)
        return out

    # ------------------------------------------------------------------------------- search

    def search(
        self,
        queries: Vectors,
        k: int,
        *,
        platforms: Sequence[str | None] | None = None,
        exclude: Sequence[set[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(item_id, score)`` per query, best first.

        ``platforms[i]`` restricts query ``i`` to one platform (``None``: all); ``exclude[i]`` holds
        item ids never returned for query ``i``.  Lists are shorter than ``k`` only when too few
        items qualify.  Raises :class:`IndexNotReady` when a requested platform (or, for ``None``,
        the whole index) holds no items.
        """
        q = self._check_vectors(queries, "queries")
        n = len(q)
        if not isinstance(k, int) or k < 0:
            raise IndexError_(f"k must be a non-negative int, got {k!r}")
        plats = self._check_per_query(platforms, n, "platforms", None)
        excl = self._check_per_query(exclude, n, "exclude", set())
        results: list[list[tuple[str, float]]] = [[] for _ in range(n)]
        for platform, rows in _group(range(n), lambda r: plats[r]).items():
            self._require_items(platform)
            if k == 0:
                continue
            self._search_rows(q, rows, k, platform, excl, results)
        return results

    def _search_rows(
        self,
        q: Vectors,
        rows: list[int],
        k: int,
        platform: str | None,
        excl: list[set[str]],
        results: list[list[tuple[str, float]]],
    ) -> None:
        """Search with a modest over-fetch first; only queries whose exclusions ate too many
        candidates are searched again with room for all of their exclusions.

        A person's consumed items sit close to their profile, so they crowd the top of the list; but
        fetching ``k + |consumed|`` for everyone makes every search as slow as the heaviest user's.
        """
        fetch = k + min(max(len(excl[r]) for r in rows), max(2 * k, FIRST_OVERFETCH))
        pending = rows
        while pending:
            scores, ids = self._search_group(q[pending], fetch, platform)
            retry = []
            for j, r in enumerate(pending):
                results[r] = self._assemble(scores[j], ids[j], k, excl[r])
                if len(results[r]) < k and len(excl[r]) > fetch - k:
                    retry.append(r)  # some of the fetched were excluded: the list may be short wrongly
            pending = retry
            fetch = k + max((len(excl[r]) for r in retry), default=0)

    def _search_group(
        self, queries: Vectors, fetch: int, platform: str | None
    ) -> tuple[npt.NDArray[np.float32], IntIds]:
        """One faiss call per shard for the whole group; merged and sorted best-first."""
        shards = [self._shards[platform]] if platform is not None else [s for s in self._shards.values() if len(s)]
        parts = [s.search(queries, fetch) for s in shards]
        if len(parts) == 1:
            scores, ids = parts[0]
        else:
            scores = np.concatenate([p[0] for p in parts], axis=1)
            ids = np.concatenate([p[1] for p in parts], axis=1)
        if (ids < 0).any():
            scores = np.where(ids >= 0, scores, -np.inf)
        if len(parts) > 1 or isinstance(shards[0], _TombstoneShard):
            order = np.argsort(-scores, axis=1, kind="stable")
            scores = np.take_along_axis(scores, order, axis=1)
            ids = np.take_along_axis(ids, order, axis=1)
        return scores, ids

    def _assemble(
        self, scores: npt.NDArray[np.float32], ids: IntIds, k: int, excluded: set[str]
    ) -> list[tuple[str, float]]:
        """Turn one query's sorted candidates into ``(item_id, score)``, skipping exclusions."""
        out: list[tuple[str, float]] = []
        for score, fid in zip(scores.tolist(), ids.tolist()):
            if fid < 0:
                continue
            name = self._name[fid]
            if name in excluded:
                continue
            out.append((name, score))
            if len(out) == k:
                break
        return out

    # -------------------------------------------------------------------------- persistence

    def save(self, path: Path) -> None:
        """Write ``vectors.npy`` + ``meta.json`` into directory ``path``, replacing it atomically.

        The new directory is fully written and fsynced under a temporary name first; an existing
        ``path`` is moved aside, the new one renamed in, and the old one removed.  If the process dies
        between the two renames, :meth:`load` falls back to the moved-aside copy.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        item_ids, plats, vecs = self._export()
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            _write_npy(tmp / VECTORS_FILE, vecs)
            meta = {"format": FORMAT, "dim": self._dim, "ids": item_ids, "platforms": plats}
            _write_bytes(tmp / META_FILE, json.dumps(meta, ensure_ascii=False).encode("utf-8"))
            _fsync_dir(tmp)
            _swap_in(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: Path, *, device: str = "auto") -> ItemIndex:
        """Read an index written by :meth:`save` (never unpickles anything)."""
        path = Path(path)
        if not path.is_dir() and _aside(path).is_dir():
            path = _aside(path)
        meta, vecs = _read_saved(path)
        index = cls(int(meta["dim"]), device=device)
        if len(vecs):
            index.upsert(meta["ids"], meta["platforms"], vecs)
        return index

    def _export(self) -> tuple[list[str], list[str], Vectors]:
        """All live items shard by shard (sorted platforms), each shard in its storage order."""
        item_ids: list[str] = []
        plats: list[str] = []
        blocks: list[Vectors] = [np.empty((0, self._dim), dtype=np.float32)]
        for platform in sorted(self._shards):
            ids, vecs = self._shards[platform].export()
            item_ids.extend(self._name[i] for i in ids.tolist())
            plats.extend([platform] * len(ids))
            blocks.append(vecs)
        return item_ids, plats, np.concatenate(blocks)

    # ------------------------------------------------------------------------------ helpers

    def _shard(self, platform: str) -> _Shard:
        """The shard of ``platform``, created on first use."""
        shard = self._shards.get(platform)
        if shard is None:
            shard = self._shards[platform] = self._new_shard()
        return shard

    def _new_shard(self) -> _Shard:
        """An ``IndexIDMap2`` shard on CPU, a tombstoning ``GpuIndexFlatIP`` shard on GPU."""
        if self._device == "cpu":
            return _IdMapShard(self._dim)
        if self._gpu_res is None:
            self._gpu_res = faiss.StandardGpuResources()
        cfg = faiss.GpuIndexFlatConfig()
        cfg.device = self._gpu
        res, dim = self._gpu_res, self._dim
        return _TombstoneShard(dim, lambda: faiss.GpuIndexFlatIP(res, dim, cfg))

    def _remove_from_shards(self, items: Iterable[str]) -> None:
        """Remove present items from their shards (mappings are left to the caller)."""
        for platform, group in _group(items, self._platform.__getitem__).items():
            ids = np.fromiter((self._key[i] for i in group), dtype=np.int64, count=len(group))
            self._shards[platform].remove(ids)

    def _require_items(self, platform: str | None) -> None:
        if self.count(platform) == 0:
            where = "the index" if platform is None else f"platform {platform!r}"
            known = ", ".join(self.platforms) or "none"
            raise IndexNotReady(f"{where} holds no items yet; platforms with items: {known}")

    def _check_vectors(self, vectors: Vectors, what: str) -> Vectors:
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[1] != self._dim:
            raise IndexError_(f"{what} must have shape (n, {self._dim}) (expected dim {self._dim}), got {arr.shape}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise IndexError_(f"{what} contain NaN or infinite values")
        return arr

    @staticmethod
    def _check_per_query(values: Sequence[Any] | None, n: int, what: str, default: Any) -> list[Any]:
        if values is None:
            return [default] * n
        if len(values) != n:
            raise IndexError_(f"{what} must have one entry per query: got {len(values)} for {n} queries")
        return list(values)

    @staticmethod
    def _last_rows(item_ids: Sequence[str], platforms: Sequence[str]) -> dict[str, int]:
        """Map each distinct id to its last row, validating ids and platforms are strings."""
        last: dict[str, int] = {}
        for row, (item, platform) in enumerate(zip(item_ids, platforms)):
            if not isinstance(item, str) or not isinstance(platform, str) or not platform:
                raise IndexError_(
                    f"row {row}: item id must be str and platform a non-empty str, got {item!r}, {platform!r}"
                )
            last.pop(item, None)
            last[item] = row
        return last


# ------------------------------------------------------------------------------- module helpers


def _group(items: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    """Group items by ``key`` preserving first-seen order (Python dicts keep insertion order)."""
    out: dict[Any, list[Any]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def _aside(path: Path) -> Path:
    """Where :meth:`ItemIndex.save` moves the previous directory during the swap."""
    return path.with_name(f"{path.name}.old")


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; a directory cannot be ``os.replace``d over a non-empty one."""
    aside = _aside(path)
    if aside.exists():
        shutil.rmtree(aside)
    if path.exists():
        os.replace(path, aside)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_npy(path: Path, array: npt.NDArray[Any]) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_saved(path: Path) -> tuple[dict[str, Any], Vectors]:
    """Read and cross-check ``meta.json`` and ``vectors.npy``."""
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        vecs = np.load(path / VECTORS_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexError_(f"cannot read a saved index at {path}: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise IndexError_(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    dim, ids, plats = meta.get("dim"), meta.get("ids"), meta.get("platforms")
    if not isinstance(ids, list) or not isinstance(plats, list) or len(ids) != len(plats):
        raise IndexError_(f"{path}: ids and platforms must be lists of equal length")
    if vecs.dtype != np.float32 or vecs.shape != (len(ids), dim):
        raise IndexError_(f"{path}: vectors are {vecs.dtype}{vecs.shape}, expected float32({len(ids)}, {dim})")
    return meta, vecs

"""On-disk cache of text embeddings, so repeated runs never re-encode the same text.

Layout: ``<cache_dir>/<model_id>/shard-*.npz``, each shard holding ``keys`` (the 20-byte SHA-1 of
each text, as a ``uint8`` matrix), ``vectors`` (float32) and the ``model_id``.  A shard is written
once to a temporary name, fsynced and ``os.replace``d in, so readers only ever see whole shards and
concurrent writers never clash (shard names are unique).  Small shards are merged once there are
many; the merged shard is durable before the ones it replaces are removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusionrec.errors import EncoderError
from fusionrec.protocols import TextEncoderT, Vectors

__all__ = ["CachedEncoder"]

log = logging.getLogger(__name__)

SHARD_GLOB = "shard-*.npz"
MAX_SHARDS = 32
"""More shard files than this are merged into one (keeps start-up reads cheap)."""
KEY_BYTES = 20


def text_key(text: str) -> bytes:
    """Cache key of a text: SHA-1 of its UTF-8 bytes (the model is implied by the directory)."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


def model_dirname(model_id: str) -> str:
    """A filesystem-safe directory name for ``model_id``; a hash suffix keeps sanitised ids apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_id).strip(".") or "model"
    if safe == model_id:
        return safe
    return f"{safe}-{hashlib.sha1(model_id.encode('utf-8')).hexdigest()[:8]}"


class CachedEncoder:
    """Wraps a :class:`TextEncoderT`; implements it too, encoding only texts not seen before."""

    def __init__(self, inner: TextEncoderT, cache_dir: Path) -> None:
        self._inner = inner
        self._dir = Path(cache_dir) / model_dirname(inner.model_id)
        self._rows: dict[bytes, int] = {}
        self._blocks: list[Vectors] = []
        self._table: Vectors = np.empty((0, inner.dim), dtype=np.float32)
        self._loaded: set[str] = set()
        self._scanned = False
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def directory(self) -> Path:
        """Where this model's shards live."""
        return self._dir

    def __len__(self) -> int:
        """Distinct texts cached (that this process has read or written)."""
        return len(self._rows)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> Vectors:
        """Vectors for ``texts`` in order: cached rows, plus one inner call for the unseen texts."""
        if isinstance(texts, str):
            raise EncoderError("encode() takes a sequence of texts, got a single str; wrap it in a list")
        keys = [text_key(t) for t in texts]
        if not self._scanned:
            self._refresh()
        missing = self._missing(texts, keys)
        if missing and self._refresh():
            missing = self._missing(texts, keys)
        if missing:
            self._add(list(missing), self._encode_inner(list(missing.values()), batch_size))
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        return self._lookup(keys)

    # ----------------------------------------------------------------------------- internals

    def _missing(self, texts: Sequence[str], keys: list[bytes]) -> dict[bytes, str]:
        """Distinct uncached texts by key, in first-seen order."""
        return {k: t for k, t in zip(keys, texts) if k not in self._rows}

    def _encode_inner(self, texts: list[str], batch_size: int) -> Vectors:
        vecs = np.asarray(self._inner.encode(texts, batch_size=batch_size), dtype=np.float32)
        if vecs.shape != (len(texts), self.dim):
            raise EncoderError(
                f"inner encoder {self.model_id!r} returned shape {vecs.shape}, expected {(len(texts), self.dim)}"
            )
        return vecs

    def _lookup(self, keys: list[bytes]) -> Vectors:
        if len(self._blocks) > 1 or (self._blocks and len(self._table) != len(self._rows)):
            self._table = np.concatenate(self._blocks)
            self._blocks = [self._table]
        rows = np.fromiter((self._rows[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._table[rows] if len(keys) else np.empty((0, self.dim), dtype=np.float32)

    def _add(self, keys: list[bytes], vecs: Vectors) -> None:
        """Persist a new shard, then index it in memory."""
        self._dir.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex}.npz"
        _write_shard(self._dir / name, keys, vecs, self.model_id)
        self._loaded.add(name)
        self._remember(keys, vecs)
        if len(self._loaded) > MAX_SHARDS:
            self._compact()

    def _remember(self, keys: list[bytes], vecs: Vectors) -> None:
        start = len(self._rows)
        fresh = [(i, k) for i, k in enumerate(keys) if k not in self._rows]
        self._rows.update((k, start + j) for j, (_, k) in enumerate(fresh))
        self._blocks.append(vecs[[i for i, _ in fresh]])

    def _refresh(self) -> bool:
        """Read shards written since the last look (by this or another process); True if any."""
        self._scanned = True
        if not self._dir.is_dir():
            return False
        found = False
        for path in sorted(self._dir.glob(SHARD_GLOB)):
            if path.name in self._loaded:
                continue
            shard = _read_shard(path, self.model_id, self.dim)
            self._loaded.add(path.name)
            if shard is not None:
                self._remember(*shard)
                found = True
        return found

    def _compact(self) -> None:
        """Merge all shards this process knows into one, then remove the merged ones."""
        names = sorted(n for n in self._loaded if (self._dir / n).exists())
        if len(names) < 2:
            return
        self._lookup([])  # consolidates the in-memory table
        keys = [b""] * len(self._rows)
        for key, row in self._rows.items():
            keys[row] = key
        merged = f"shard-{uuid.uuid4().hex}.npz"
        _write_shard(self._dir / merged, keys, self._table, self.model_id)
        for name in names:
            (self._dir / name).unlink(missing_ok=True)
        self._loaded = {merged}


def _write_shard(path: Path, keys: list[bytes], vecs: Vectors, model_id: str) -> None:
    """Write a shard under a temporary name, fsync it, then atomically rename it into place."""
    key_mat = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            vectors = np.ascontiguousarray(vecs, dtype=np.float32)
            np.savez(fh, keys=key_mat, vectors=vectors, model_id=np.array(model_id))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_shard(path: Path, model_id: str, dim: int) -> tuple[list[bytes], Vectors] | None:
    """A shard's keys and vectors, or None (with a warning) if it is unreadable or foreign."""
    try:
        with np.load(path, allow_pickle=False) as data:
            key_mat, vecs, stored_id = data["keys"], data["vectors"], str(data["model_id"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("skipping unreadable embedding-cache shard %s: %s", path, exc)
        return None
    if stored_id != model_id or vecs.shape != (len(key_mat), dim) or key_mat.shape[1:] != (KEY_BYTES,):
        log.warning("skipping embedding-cache shard %s: written for %r, shape %s", path, stored_id, vecs.shape)
        return None
    return [bytes(row) for row in key_mat], vecs.astype(np.float32, copy=False)

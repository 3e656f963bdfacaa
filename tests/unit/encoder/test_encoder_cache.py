"""CachedEncoder: repeated texts are never re-encoded, across calls and across instances."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from encoder import cache as cache_mod
from encoder.cache import CachedEncoder, model_dirname
from fusionrec.errors import EncoderError

DIM = 8


class CountingEncoder:
    """Deterministic fake: a text's vector is derived from its hash; counts what it encodes."""

    def __init__(self, model_id: str = "fake-1", dim: int = DIM) -> None:
        self._model_id = model_id
        self._dim = dim
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([vec(t, self._dim) for t in texts]) if texts else np.empty((0, self._dim), np.float32)

    @property
    def encoded(self) -> int:
        return sum(len(c) for c in self.calls)


def vec(text: str, dim: int = DIM) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def expected(texts: Sequence[str]) -> np.ndarray:
    return np.stack([vec(t) for t in texts])


def test_second_encode_hits_cache(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner, tmp_path)
    texts = ["a", "b", "c"]
    np.testing.assert_array_equal(enc.encode(texts), expected(texts))
    np.testing.assert_array_equal(enc.encode(texts[::-1]), expected(texts[::-1]))
    assert inner.encoded == 3 and len(inner.calls) == 1
    assert (enc.hits, enc.misses) == (3, 3)


def test_only_missing_texts_are_encoded_once(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner, tmp_path)
    enc.encode(["a", "b"])
    out = enc.encode(["b", "c", "c", "a", "d"])
    np.testing.assert_array_equal(out, expected(["b", "c", "c", "a", "d"]))
    assert inner.calls == [["a", "b"], ["c", "d"]]


def test_cache_survives_a_new_instance(tmp_path: Path) -> None:
    CachedEncoder(CountingEncoder(), tmp_path).encode(["x", "y"])
    inner = CountingEncoder()
    out = CachedEncoder(inner, tmp_path).encode(["y", "x"])
    np.testing.assert_array_equal(out, expected(["y", "x"]))
    assert inner.encoded == 0


def test_sees_shards_written_by_another_instance(tmp_path: Path) -> None:
    first = CachedEncoder(CountingEncoder(), tmp_path)
    first.encode(["a"])
    CachedEncoder(CountingEncoder(), tmp_path).encode(["b"])
    first.encode(["b", "a"])
    assert first.misses == 1


def test_models_do_not_share_entries(tmp_path: Path) -> None:
    CachedEncoder(CountingEncoder("m1"), tmp_path).encode(["a"])
    inner = CountingEncoder("m2")
    enc = CachedEncoder(inner, tmp_path)
    enc.encode(["a"])
    assert inner.encoded == 1
    assert enc.model_id == "m2" and enc.dim == DIM


def test_empty_input(tmp_path: Path) -> None:
    inner = CountingEncoder()
    out = CachedEncoder(inner, tmp_path).encode([])
    assert out.shape == (0, DIM) and out.dtype == np.float32
    assert inner.calls == []


def test_compaction_keeps_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "MAX_SHARDS", 3)
    enc = CachedEncoder(CountingEncoder(), tmp_path)
    texts = [f"t{i}" for i in range(10)]
    for t in texts:
        enc.encode([t])
    assert len(list(enc.directory.glob("shard-*.npz"))) <= 3
    inner = CountingEncoder()
    np.testing.assert_array_equal(CachedEncoder(inner, tmp_path).encode(texts), expected(texts))
    assert inner.encoded == 0


def test_no_temp_files_left_and_bad_shard_is_skipped(tmp_path: Path) -> None:
    enc = CachedEncoder(CountingEncoder(), tmp_path)
    enc.encode(["a"])
    assert [p.name for p in enc.directory.iterdir() if p.name.startswith(".tmp")] == []
    (enc.directory / "shard-broken.npz").write_bytes(b"not a zip")
    inner = CountingEncoder()
    out = CachedEncoder(inner, tmp_path).encode(["a", "b"])
    np.testing.assert_array_equal(out, expected(["a", "b"]))
    assert inner.calls == [["b"]]


def test_wrong_inner_shape_raises(tmp_path: Path) -> None:
    class Bad(CountingEncoder):
        def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
            return np.zeros((len(texts), DIM + 1), np.float32)

    with pytest.raises(EncoderError, match="shape"):
        CachedEncoder(Bad(), tmp_path).encode(["a"])


def test_model_dirname_is_safe_and_distinct() -> None:
    assert model_dirname("mini-lm_1.0") == "mini-lm_1.0"
    a, b = model_dirname("org/model"), model_dirname("org:model")
    assert "/" not in a and a != b

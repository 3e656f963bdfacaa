"""Test doubles shared by the unit tests (importable as ``fakes``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class HashEncoder:
    """Text -> a unit vector drawn from a generator seeded by the text's SHA-256 (deterministic, no model)."""

    def __init__(self, dim: int = 16, model_id: str = "fake-sha256-16") -> None:
        self.dim = dim
        self.model_id = model_id

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            out[row] = v / np.linalg.norm(v)
        return out

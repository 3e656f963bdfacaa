"""Test doubles shared by the tests (importable as ``fakes``: pytest puts ``tests/`` on the path).

One text encoder that needs no model, and one way to build the processing core around it (with the
real candidate index), so that every test builds the core the way the worker does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from encoder.items import ItemEncoder
from fusionrec.config import Config, PolicyConfig, WorkerConfig
from fusionrec.contracts import ItemUpsert
from fusionrec.core import DictStates, Recommender
from stream.compose import index_factory


class HashEncoder:
    """Text -> a unit vector drawn from a generator seeded by the text's SHA-256 (deterministic, no model)."""

    def __init__(self, dim: int = 16, model_id: str = "fake-sha256-16") -> None:
        self.dim = dim
        self.model_id = model_id
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            out[row] = v / np.linalg.norm(v)
        return out


def catalog(platforms: Sequence[str] = ("shop", "video"), n: int = 30) -> list[ItemUpsert]:
    """``n`` items per platform, ids ``<first letter><i>`` (``s0``, ``v12``...)."""
    return [
        ItemUpsert(f"{p[0]}{i}", p, f"{p} thing {i}", text=f"about {p} {i}", categories=(f"cat{i % 3}",))
        for p in platforms
        for i in range(n)
    ]


def build_core(
    platforms: Sequence[str] = ("shop", "video"),
    *,
    items: Sequence[ItemUpsert] | None = None,
    top_k: int = 5,
    policy: PolicyConfig | None = None,
    dim: int = 16,
    cfg: Config | None = None,
    **kwargs: Any,
) -> Recommender:
    """The core with a hash encoder, the real candidate index and ``items`` (default: :func:`catalog`)."""
    cfg = cfg or Config(platforms=tuple(platforms), worker=WorkerConfig(top_k=top_k), policy=policy or PolicyConfig())
    rec = Recommender(cfg, ItemEncoder(HashEncoder(dim)), index_factory(cfg), **kwargs)
    rec.apply_items(list(items) if items is not None else catalog(platforms))
    return rec


__all__ = ["HashEncoder", "DictStates", "build_core", "catalog"]

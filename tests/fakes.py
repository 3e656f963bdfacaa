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
from fusionrec.contracts import BehaviorEvent, ItemUpsert
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


def cycle_walks(rec: Recommender, people: int, n: int = 30, seed: int = 0) -> DictStates:
    """Each person clicks along the shop cycle of :func:`catalog` from a random item (``s_j``,
    ``s_j+1``, ...); the packed states the core stored."""
    rng = np.random.default_rng(seed)
    states, events = DictStates(), []
    for u in range(people):
        start, length = int(rng.integers(n)), int(rng.integers(4, 9))
        for t in range(length):
            events.append(BehaviorEvent(f"e{u}-{t}", 1000.0 + t, "shop", f"u{u}", f"s{(start + t) % n}", "click"))
    events.sort(key=lambda e: e.ts)
    rec.process(events, states, rank=False)
    return states


def random_sequence_model(
    item_text: str = "only", version: int = 3, seed: int = 0, dim: int = 16, platforms: Sequence[str] = ("shop", "video"), n: int = 30
) -> Any:
    """An untrained one-block network over :func:`catalog`'s items (``n`` per platform), as served."""
    import torch

    from fusionrec.evaluation.sasrec import SASRec, SASRecConfig
    from fusionrec.learner.sequence import SequenceModel

    torch.manual_seed(seed)
    items = n * len(platforms)
    net = SASRec(items, len(platforms), SASRecConfig(dim=dim, heads=2, blocks=1, max_len=20, item_text=item_text), torch.zeros(items + 1, dim))
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    id_rows = {p: (1 + j * n, n) for j, p in enumerate(platforms)} if item_text != "only" else None
    return SequenceModel.from_arrays(arrays, list(platforms), heads=2, version=version, id_rows=id_rows, id_out=item_text == "add")


__all__ = ["HashEncoder", "DictStates", "build_core", "catalog", "cycle_walks", "random_sequence_model"]

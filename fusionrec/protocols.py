"""Interfaces the core needs from the encoder and the index (implemented in ``encoder/``, ``index/``).

They import nothing heavy, so the core and its tests never pull in torch or faiss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
"""A 2-D float32 array, one row per item or person."""


class TextEncoderT(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    @property
    def dim(self) -> int: ...

    @property
    def model_id(self) -> str:
        """A stable name of the model (used in cache keys and checkpoint manifests)."""
        ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> Vectors: ...


class VectorIndexT(Protocol):
    """An inner-product index of item vectors keyed by item id, each item tagged with a platform."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def __contains__(self, item_id: object) -> bool: ...

    def upsert(self, item_ids: Sequence[str], platforms: Sequence[str], vectors: Vectors) -> None: ...

    def delete(self, item_ids: Sequence[str]) -> int: ...

    def vectors_of(self, item_ids: Sequence[str]) -> Vectors: ...

    def platform_of(self, item_id: str) -> str | None: ...

    def search(
        self,
        queries: Vectors,
        k: int,
        *,
        platforms: Sequence[str | None] | None = None,
        exclude: Sequence[set[str]] | None = None,
    ) -> list[list[tuple[str, float]]]: ...

"""Interfaces the core needs from the encoder and the candidate index (implemented in ``encoder/``, ``index/``).

They import nothing heavy, so the core and its tests never pull in torch or faiss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from fusionrec.contracts import ItemUpsert

Vectors = npt.NDArray[np.float32]
"""A 2-D float32 array, one row per item or person."""

MatrixView = Callable[[], tuple[Vectors, npt.NDArray[np.bool_]]]
"""A platform's ``(vectors[:n], alive[:n])`` as of the call (see ``fusionrec.items``)."""


class TextEncoderT(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    @property
    def dim(self) -> int: ...

    @property
    def model_id(self) -> str:
        """A stable name of the model (used in cache keys and checkpoint manifests)."""
        ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> Vectors: ...


class ItemEncoderT(Protocol):
    """Turns catalog items into L2-normalised vectors (a text template over a :class:`TextEncoderT`)."""

    @property
    def dim(self) -> int: ...

    @property
    def model_id(self) -> str: ...

    def encode_items(self, items: Sequence[ItemUpsert]) -> Vectors: ...


class CandidateIndexT(Protocol):
    """Top-k inner-product search over one platform's store rows (``index.candidates``)."""

    @property
    def kind(self) -> str:
        """``exact``, ``ivf`` or ``gpu-exact``: what answers searches now."""
        ...

    def add(self, rows: npt.NDArray[np.int64], vectors: Vectors) -> None: ...

    def remove(self, rows: npt.NDArray[np.int64]) -> None: ...

    def search(
        self,
        queries: Vectors,
        k: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        bias: npt.NDArray[np.float32] | None = None,
        effort: float = 1.0,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...

"""Catalog items → vectors: the item text template over any text encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from encoder.templates import item_text
from fusionrec.contracts import ItemUpsert
from fusionrec.protocols import TextEncoderT

__all__ = ["ItemEncoder"]


class ItemEncoder:
    """Implements ``fusionrec.protocols.ItemEncoderT`` on top of a ``TextEncoderT``."""

    def __init__(self, text: TextEncoderT) -> None:
        self.text = text

    @property
    def dim(self) -> int:
        return self.text.dim

    @property
    def model_id(self) -> str:
        return self.text.model_id

    def encode_items(self, items: Sequence[ItemUpsert]) -> npt.NDArray[np.float32]:
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return self.text.encode([item_text(i.title, i.text, i.platform, i.categories) for i in items])

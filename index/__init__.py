"""Vector index of item embeddings (faiss).

``ItemIndex`` is re-exported lazily so ``import index`` stays cheap and never loads faiss by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from index.faiss_index import ItemIndex

__all__ = ["ItemIndex"]


def __getattr__(name: str) -> Any:
    """Load ``index.faiss_index`` (and faiss) on first access to ``ItemIndex``."""
    if name == "ItemIndex":
        from index.faiss_index import ItemIndex

        return ItemIndex
    raise AttributeError(f"module 'index' has no attribute {name!r}")

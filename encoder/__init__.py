"""Text encoder: item templates, a local Hugging Face encoder and an on-disk cache.

Heavy classes are re-exported lazily so ``import encoder`` never loads torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from encoder.templates import item_text

if TYPE_CHECKING:
    from encoder.cache import CachedEncoder
    from encoder.hf import TextEncoder, default_model_dir

__all__ = ["CachedEncoder", "TextEncoder", "default_model_dir", "item_text"]

_LAZY = {
    "CachedEncoder": "encoder.cache",
    "TextEncoder": "encoder.hf",
    "default_model_dir": "encoder.hf",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'encoder' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

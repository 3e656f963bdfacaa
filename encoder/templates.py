"""Turn an item's fields into one compact text for the encoder.

Deterministic, so the same item always hits the same encoder-cache key.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TEXT_BUDGET", "item_text"]

TEXT_BUDGET = 1000
"""Characters of free text kept: the encoder truncates at ~128 tokens anyway, so more is wasted work."""


def _clean(value: str) -> str:
    """Collapse whitespace (tabs, newlines, runs of spaces) so equal content gives equal text."""
    return " ".join(value.split())


def _truncate(value: str, budget: int) -> str:
    """Cut at ``budget`` characters, backing off to a word boundary when one is near."""
    if len(value) <= budget:
        return value
    cut = value[:budget]
    space = cut.rfind(" ")
    return cut[:space] if space >= budget // 2 else cut


def _join(parts: Sequence[str]) -> str:
    """Join non-empty parts as sentences: a full stop after each but the last, never doubled."""
    kept = [p for p in parts if p]
    head = [p if p.endswith((".", "!", "?")) else p + "." for p in kept[:-1]]
    return " ".join(head + kept[-1:])


def item_text(
    title: str,
    text: str = "",
    platform: str = "",
    categories: Sequence[str] = (),
    *,
    budget: int = TEXT_BUDGET,
) -> str:
    """Return ``"[platform] title. cat1, cat2. text"`` with empty parts left out.

    The text is dropped when it merely repeats the title (common in the Amazon data) and cut to
    ``budget`` characters otherwise.
    """
    title_c = _clean(title)
    text_c = _clean(text)
    if text_c == title_c or (title_c and text_c.startswith(title_c) and len(text_c) - len(title_c) < 3):
        text_c = ""
    elif title_c and text_c.startswith(title_c):
        text_c = text_c[len(title_c) :].lstrip(" .:-")
    cats = ", ".join(c for c in (_clean(c) for c in categories) if c)
    body = _join([title_c, cats, _truncate(text_c, budget)])
    platform_c = _clean(platform)
    return f"[{platform_c}] {body}".rstrip() if platform_c else body

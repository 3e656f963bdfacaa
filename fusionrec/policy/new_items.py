"""The new-item slot: every published list shows one item nobody has interacted with yet.

A new item has no co-occurrence and no popularity, the signals the learned ranker leans on most, so
even when its text fits the person well it rarely earns a place in the top K by score alone; and an
item that is never shown never collects the interactions that would let it compete.  The slot gives
the best new item (by the model's own score, which for a new item is its learned text match) a
place at ``position`` or above: if the list already shows a new item there, nothing changes;
otherwise the best new candidate is inserted at ``position`` (or moved up to it), the items below
shift down by one and the last falls off.  The inserted item is marked ``explored``.

    >>> picks = [Pick("a", 0.9, False), Pick("b", 0.8, False), Pick("c", 0.7, False)]
    >>> cands = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("n", 0.1)]
    >>> [p.item_id for p in place_new_item(picks, cands, 3, 2, new={"n"})]
    ['a', 'n', 'b']
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fusionrec.policy.exploration import Pick

__all__ = ["place_new_item"]


def place_new_item(
    picks: Sequence[Pick],
    candidates: Sequence[tuple[str, float]],
    k: int,
    position: int,
    *,
    new: Collection[str],
    exclude: Collection[str] = frozenset(),
) -> list[Pick]:
    """``picks`` with a new item (one of ``new``) at ``position`` (1-based, capped at ``k``) or above.

    ``candidates`` are the scored candidates, best first; the first new one that is not excluded is the
    one placed.  ``position <= 0``, no new candidate, or a new item already at or above the position
    leave ``picks`` as they are (cut to ``k``).
    """
    out = list(picks[:k])
    if position <= 0 or k <= 0:
        return out
    slot = min(position, k) - 1  # 0-based index the new item must reach
    if any(p.item_id in new for p in out[: slot + 1]):
        return out
    choice = next(((i, s) for i, s in candidates if i in new and i not in exclude), None)
    if choice is None:
        return out
    out = [p for p in out if p.item_id != choice[0]]  # a new item lower in the list moves up
    out.insert(min(slot, len(out)), Pick(choice[0], choice[1], True))
    return out[:k]

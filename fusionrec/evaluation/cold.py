"""How hard the cold-item slice is: the never-interacted pool at each cold target.

A cold target is one whose item nobody had interacted with before it was ranked.  What the slice
measures depends on the pool the item hides in: the items of the target's platform nobody had
interacted with by then.  On a k-core set every catalog item is interacted with eventually, so that
pool holds exactly the items that will be interacted with later, and the slice is easier than
reality; items that nobody ever interacts with (``never_interacted``) stay in the pool as distractors.

    >>> pools = ColdPools({"shop": 5})
    >>> pools.interacted("shop", "a"), pools.interacted("shop", "a"), pools.interacted("shop", "b")
    (True, False, True)
    >>> pools.at_cold_target("shop")
    >>> pools.summary(never_interacted={"shop": 1})["pool_median"]
    3.0
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["ColdPools", "describe_pools"]


class ColdPools:
    def __init__(self, catalog_sizes: Mapping[str, int]) -> None:
        self.sizes = dict(catalog_sizes)
        self._seen: set[str] = set()
        self._seen_per_platform: dict[str, int] = defaultdict(int)
        self.pools: list[int] = []

    def interacted(self, platform: str, item_id: str) -> bool:
        """Someone interacted with ``item_id``; True when it is the item's first interaction."""
        if item_id in self._seen:
            return False
        self._seen.add(item_id)
        self._seen_per_platform[platform] += 1
        return True

    def at_cold_target(self, platform: str) -> None:
        """Record the pool a cold target of ``platform`` is ranked in, as things stand."""
        self.pools.append(max(self.sizes.get(platform, 0) - self._seen_per_platform[platform], 0))

    def summary(self, never_interacted: Mapping[str, int]) -> dict[str, Any]:
        """The pool sizes at the cold targets, and the catalog items nobody ever interacts with."""
        pools = np.asarray(self.pools, np.float64)
        stats = (
            {"pool_median": float(np.median(pools)), "pool_mean": round(float(pools.mean()), 1), "pool_min": int(pools.min()), "pool_max": int(pools.max())}
            if len(pools)
            else {"pool_median": None, "pool_mean": None, "pool_min": None, "pool_max": None}
        )
        never = {p: int(n) for p, n in sorted(never_interacted.items())}
        return {
            "cold_targets": len(self.pools),
            **stats,
            "never_interacted": never,
            "optimistic": sum(never.values()) == 0,  # no distractor: the pool is exactly the future
        }


def describe_pools(summary: Mapping[str, Any] | None) -> str:
    """One line for the printed report ("" when there is nothing to say)."""
    if not summary or not summary.get("cold_targets"):
        return ""
    never = sum(summary["never_interacted"].values())
    line = (
        f"cold-item pools (items of the platform nobody had interacted with, at each cold target): median "
        f"{summary['pool_median']:.0f}, mean {summary['pool_mean']}, {summary['pool_min']}-{summary['pool_max']}; "
    )
    if summary["optimistic"]:
        return line + "no catalog item is left uninteracted, so every pool holds only future items: the slice is optimistic"
    return line + f"{never} catalog items nobody ever interacts with stay in the pools as distractors"

"""Which offered rate to try next, and which rate the worker sustains.

The search climbs a ladder of offered rates (geometric by default, or an explicit list) until a step
fails; if the very first step fails it halves the rate instead (at most ``max_down`` times).  Then it
bisects, geometrically, between the highest pass and the lowest fail above it, ``refinements`` times.
The sustained rate is the highest offered rate whose step passed below every failed rate: steps are
never tried above a failure, so a lucky pass there cannot count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["SearchPlan", "Tried", "Kind", "next_rate", "sustained_index"]

Kind = Literal["ladder", "down", "refine"]


@dataclass(frozen=True)
class SearchPlan:
    start_rate: float = 500.0
    factor: float = math.sqrt(2.0)  # ladder steps of +41 %; one refinement narrows the gap to +19 %
    max_rate: float = 100_000.0
    rates: tuple[float, ...] = ()  # an explicit ladder, tried in ascending order instead of the geometric one
    refinements: int = 1  # bisections between the highest pass and the lowest fail above it
    max_down: int = 3  # halvings when every step so far failed
    min_gap: float = 0.05  # no refinement closer than this (relative) to a rate already tried


@dataclass(frozen=True)
class Tried:
    rate: float  # offered (asked) events/s
    passed: bool
    kind: Kind = "ladder"


def next_rate(plan: SearchPlan, done: Sequence[Tried]) -> tuple[float, Kind] | None:
    """The next offered rate to try after the steps ``done`` (in the order they ran), or None: finished."""
    ladder = sorted(plan.rates)
    if not done:
        return (ladder[0] if ladder else plan.start_rate), "ladder"
    passes = [t.rate for t in done if t.passed]
    fails = [t.rate for t in done if not t.passed]
    if not fails:
        last = max(t.rate for t in done)
        if ladder:
            higher = [r for r in ladder if r > last]
            return (higher[0], "ladder") if higher else None
        climbed = sum(1 for t in done if t.kind == "ladder")
        nxt = round(plan.start_rate * plan.factor**climbed, 1)  # from the start: no rounding drift
        return (nxt, "ladder") if nxt <= plan.max_rate else None
    if not passes:
        halvings = sum(1 for t in done if t.kind == "down")
        return (round(min(fails) / 2, 1), "down") if halvings < plan.max_down else None
    best = max(passes)
    above = [f for f in fails if f > best]
    if not above or sum(1 for t in done if t.kind == "refine") >= plan.refinements:
        return None
    mid = round(math.sqrt(best * min(above)), 1)  # geometric middle (the ladder is geometric too), 0.1/s
    if any(abs(mid - t.rate) / t.rate < plan.min_gap for t in done):
        return None  # the ladder is already this fine here
    return mid, "refine"


def sustained_index(done: Sequence[Tried]) -> int | None:
    """Index in ``done`` of the highest passing rate below every failed rate (None: nothing passed)."""
    lowest_fail = min((t.rate for t in done if not t.passed), default=math.inf)
    best: int | None = None
    for k, t in enumerate(done):
        if t.passed and t.rate < lowest_fail and (best is None or t.rate > done[best].rate):
            best = k
    return best

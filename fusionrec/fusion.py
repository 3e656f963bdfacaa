"""Per-person, per-platform profiles and their fusion into one vector (pure math, no I/O).

A platform profile is a time-decayed, event-type-weighted sum of the vectors of the items the person
interacted with on that platform.  The fused vector for a target platform is a weighted mix of the
unit directions of every platform profile (``P = Σ α_p · û_p``), where ``α_p`` grows with the
profile's decayed mass (confidence), a per-platform weight, and a boost for the target platform itself.
History on platform A therefore shapes what is recommended on platform B.

    >>> import numpy as np
    >>> params = FusionParams(half_life_s=86400.0)
    >>> s = PersonState.new("p1")
    >>> learn(s, platform="shop", item=1, vector=np.array([1, 0], np.float32), weight=1.0, ts=0.0, params=params)
    >>> learn(s, platform="video", item=2, vector=np.array([0, 1], np.float32), weight=1.0, ts=0.0, params=params)
    >>> [round(float(x), 3) for x in fused_vector(s, "shop", now=0.0, params=params)]
    [0.894, 0.447]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fusionrec.state import PersonState, Profile, remember

Vector = npt.NDArray[np.float32]

__all__ = [
    "FusionParams",
    "PersonState",
    "learn",
    "fused_vector",
    "mix_vector",
    "platform_mix",
    "event_weight",
    "RECENT_PER_PLATFORM",
    "SEQUENCE_LENGTH",
]

RECENT_PER_PLATFORM = 20
SEQUENCE_LENGTH = 20
"""Most recent positively-weighted items of a person across all platforms, oldest first."""


@dataclass(frozen=True)
class FusionParams:
    half_life_s: float
    platform_weights: Mapping[str, float] = field(default_factory=dict)
    same_platform_boost: float = 2.0
    max_consumed: int = 1000
    max_recent_events: int = 64


def event_weight(event_type: str, value: float | None, weights: Mapping[str, float]) -> float:
    """Weight of one event; a rating is centred so low stars push the profile away from the item."""
    w = weights.get(event_type, 1.0)
    if event_type == "rating" and value is not None:
        return w * (value - 2.5) / 2.5
    return w


def decay(dt: float, half_life_s: float) -> float:
    return float(0.5 ** (dt / half_life_s)) if dt > 0 else 1.0


def learn(
    state: PersonState,
    *,
    platform: str,
    item: int,
    vector: Vector,
    weight: float,
    ts: float,
    params: FusionParams,
    event: int | None = None,
) -> None:
    """Fold one interaction into the person's profile on ``platform`` (mutates ``state``).

    ``item`` and ``event`` are the 64-bit hashes of the item id and the event id.
    """
    profile = state.profiles.get(platform)
    if profile is None:
        profile = state.profiles[platform] = Profile.empty(len(vector), ts)
    k = decay(ts - profile.ts, params.half_life_s)
    if profile.norm > 0:
        profile.set_vector(profile.vec * np.float32(k) + np.float32(weight) * vector)
    else:
        profile.set_vector(np.float32(weight) * vector)
    profile.mass = profile.mass * k + abs(weight)
    profile.ts = max(profile.ts, ts)
    profile.n += 1
    remember(profile.recent, item, RECENT_PER_PLATFORM)
    remember(state.consumed, item, params.max_consumed)
    if weight > 0:
        remember(state.seq, item, SEQUENCE_LENGTH)
    if event is not None:
        remember(state.recent_events, event, params.max_recent_events)
    state.last_ts = max(state.last_ts, ts)


def alpha(profile: Profile, name: str, target: str, now: float, params: FusionParams) -> float:
    """The fusion weight of one platform profile for ranking ``target`` as of ``now``."""
    mass = profile.mass * decay(now - profile.ts, params.half_life_s)
    a = params.platform_weights.get(name, 1.0) * mass / (mass + 1.0)
    return a * params.same_platform_boost if name == target else a


def platform_mix(state: PersonState, target: str, now: float, params: FusionParams) -> dict[str, tuple[float, Vector]]:
    """For each platform profile with a direction: its fusion weight α_p and its unit direction û_p."""
    return {
        name: (alpha(p, name, target, now, params), p.unit.astype(np.float32))
        for name, p in state.profiles.items()
        if p.norm > 0.0
    }


def fused_vector(state: PersonState, target: str, now: float, params: FusionParams) -> Vector | None:
    """The unit vector used to search items of ``target`` for this person, or None without history."""
    return mix_vector(platform_mix(state, target, now, params))


def mix_vector(mix: Mapping[str, tuple[float, Vector]]) -> Vector | None:
    """``Σ α_p · û_p``, normalised; None when there is nothing to mix."""
    if not mix:
        return None
    # alphas of a long-idle history are tiny (~1e-26 after 7 years at a 30-day half-life) and their
    # squares underflowed float32, so the norm came out 0 (no vector) or wrong (a non-unit query);
    # dividing by the largest |alpha| (the result is normalised anyway) and summing in float64 avoids it
    scale = max(abs(a) for a, _ in mix.values())
    if scale == 0.0:
        return None
    fused = sum((a / scale) * direction.astype(np.float64) for a, direction in mix.values())
    norm = float(np.linalg.norm(fused))
    if norm == 0.0:
        return None
    return (fused / norm).astype(np.float32)

"""Exploration policies: which K of the scored candidates are published, and which of them explore.

A pure top-K ranker only ever shows what it already believes in, so items with few interactions never
collect the feedback that would prove them good.  These policies trade a little expected relevance for
that feedback:

- ``none``: top-K by score (pure exploitation, the control arm of any A/B test);
- ``epsilon_greedy``: each slot after the first ``protected_slots`` is, with probability
  ``explore_share``, replaced by a uniform draw from the candidates below the top K.  Keeping the head of
  the list intact bounds the loss: only the DCG mass of the unprotected slots is at risk, and only
  ``explore_share`` of it;
- ``thompson``: ranks by ``score + N(0, σ²)`` with ``σ = sigma / sqrt(1 + n_i)``: an item seen ``n_i``
  times is less uncertain, so it is perturbed less;
- ``ucb``: ranks by ``score + c·sqrt(log(N + 1) / (n_i + 1))``; deterministic optimism for rarely-seen
  items.

Every random draw is a pure function of ``(seed, person id, event id, slot)`` (:func:`draw_key` and
``fusionrec.hashing``), never of Python's salted ``hash`` or of a generator's history: a replayed event
gets the same recommendations on any worker, an evaluation run is reproducible, and a whole batch
draws with a few array operations (:meth:`Policy.select_batch`).

Each published item is a :class:`Pick` ``(item_id, score, explored)``; ``score`` is always the model's
relevance score (not the perturbed one), so scores stay comparable across policies and variants, and
``explored`` says whether the item is outside the plain top-K.

    >>> policy = make_policy("epsilon_greedy", {"explore_share": 0.0})
    >>> policy.select(["a", "b", "c"], [0.1, 0.9, 0.5], 2, exclude={"c"})
    [Pick(item_id='b', score=0.9, explored=False), Pick(item_id='a', score=0.1, explored=False)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from fusionrec.errors import ConfigError
from fusionrec.hashing import combine, normal, stable_hash, uniform
from fusionrec.policy.candidates import as_scores, keep_mask, order_by_score

__all__ = [
    "Pick",
    "Policy",
    "NoExploration",
    "EpsilonGreedy",
    "Thompson",
    "UCB",
    "POLICIES",
    "POLICY_NAMES",
    "draw_key",
    "make_policy",
    "policy_params",
]


class Pick(NamedTuple):
    """One published slot: the item, its relevance score, and whether it was chosen to explore."""

    item_id: str
    score: float
    explored: bool


def draw_key(seed: int, person_id: str, event_id: str) -> int:
    """The 64-bit key of one request's draws: a pure function of ``(seed, person, event)``.

    Fields are hashed one by one (``combine``), so ``("ab", "c")`` and ``("a", "bc")`` do not collide.
    """
    return int(combine(np.uint64(int(seed) % (1 << 64)), np.uint64(stable_hash(person_id)), np.uint64(stable_hash(event_id))))


class Policy(Protocol):
    """What the ranker calls.

    :meth:`select_batch` is the hot path: a batch of candidate lists, already cleaned and sorted best
    first.  :meth:`select` is the same for one list of any shape: it filters ``exclude``, duplicates
    and non-finite scores itself, sorts, and calls :meth:`select_batch` with a batch of one.
    """

    name: ClassVar[str]

    def select_batch(self, scores: F64, k: int, keys: U64, counts: F64, totals: F64) -> tuple[I64, npt.NDArray[np.bool_]]:
        """``scores`` ``(B, M)`` sorted best first, ``-inf`` padding at the end; ``keys`` ``(B,)`` from
        :func:`draw_key`; ``counts`` ``(B, M)`` interactions per candidate, ``totals`` ``(B,)`` all
        interactions.  Returns ``(positions (B, k) into M, -1 padding; explored (B, k))``."""
        ...

    def select(
        self,
        items: Sequence[str],
        scores: npt.ArrayLike,
        k: int,
        *,
        person_id: str = "",
        event_id: str = "",
        exclude: Collection[str] = frozenset(),
        counts: npt.ArrayLike | None = None,
        total: float | None = None,
    ) -> list[Pick]: ...


F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


class _Prepared(NamedTuple):
    items: list[str]
    scores: F64  # best first
    counts: F64


def _prepare(items: Sequence[str], scores: npt.ArrayLike, exclude: Collection[str], counts: npt.ArrayLike | None) -> _Prepared:
    """Drop what must never be published and sort the rest by relevance (ties keep input order)."""
    values = as_scores(scores, len(items))
    keep = keep_mask(items, values, exclude)
    if counts is None:
        n = np.zeros(len(items), dtype=np.float64)
    else:
        n = np.asarray(counts, dtype=np.float64).reshape(-1)
        if n.shape[0] != len(items):
            raise ValueError(f"{n.shape[0]} counts for {len(items)} candidates")
        n = np.where(np.isfinite(n), np.maximum(n, 0.0), 0.0)  # a bad count must not produce NaN bonuses
    idx = np.flatnonzero(keep)
    idx = idx[order_by_score(values[idx])]
    return _Prepared([items[i] for i in idx], values[idx], n[idx])


def _select_one(policy: Policy, items: Sequence[str], scores: npt.ArrayLike, k: int, person_id: str, event_id: str,
                exclude: Collection[str], counts: npt.ArrayLike | None, total: float | None) -> list[Pick]:
    _check_k(k)
    prep = _prepare(items, scores, exclude, counts)
    if not prep.items or k == 0:
        return []
    seed = getattr(policy, "seed", 0)
    keys = np.array([draw_key(seed, person_id, event_id)], np.uint64)
    n_total = float(prep.counts.sum()) if total is None or not math.isfinite(total) else max(float(total), 0.0)
    pos, explored = policy.select_batch(prep.scores[None, :], k, keys, prep.counts[None, :], np.array([n_total]))
    return [Pick(prep.items[p], float(prep.scores[p]), bool(e)) for p, e in zip(pos[0].tolist(), explored[0].tolist()) if p >= 0]


def _head(scores: F64, k: int) -> tuple[I64, npt.NDArray[np.bool_]]:
    """The first ``k`` valid positions of each row (rows are sorted, so valid ones come first)."""
    n_valid = np.isfinite(scores).sum(axis=1)
    pos = np.broadcast_to(np.arange(k), (len(scores), k)).copy()
    pos[pos >= n_valid[:, None]] = -1
    return pos, np.zeros(pos.shape, bool)


def _by_perturbed(scores: F64, perturbed: F64, k: int) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Top-``k`` by a perturbed score; a position explores when it is not in the plain top-``k``."""
    perturbed = np.where(np.isfinite(scores), perturbed, -np.inf)
    order = np.argsort(-perturbed, axis=1, kind="stable")[:, :k]
    valid = np.isfinite(np.take_along_axis(perturbed, order, axis=1))
    pos = np.where(valid, order, -1)
    return pos, valid & (order >= k)


def _check_k(k: int) -> None:
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")


class _Selects:
    """``select`` for every policy, through ``select_batch``."""

    def select(
        self,
        items: Sequence[str],
        scores: npt.ArrayLike,
        k: int,
        *,
        person_id: str = "",
        event_id: str = "",
        exclude: Collection[str] = frozenset(),
        counts: npt.ArrayLike | None = None,
        total: float | None = None,
    ) -> list[Pick]:
        return _select_one(self, items, scores, k, person_id, event_id, exclude, counts, total)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NoExploration(_Selects):
    """Top-K by relevance; the control arm."""

    name: ClassVar[str] = "none"

    def select_batch(self, scores: F64, k: int, keys: U64, counts: F64, totals: F64) -> tuple[I64, npt.NDArray[np.bool_]]:
        return _head(scores, k)


@dataclass(frozen=True, slots=True)
class EpsilonGreedy(_Selects):
    """Each unprotected slot explores with probability ``explore_share``.

    Draw ``j < k`` of a request decides slot ``j``; draws ``k..`` order the tail (a random permutation);
    exploring slots take the tail in that order.  The same person, seed and event always give the
    same list.
    """

    explore_share: float = 0.05
    protected_slots: int = 5
    seed: int = 0
    name: ClassVar[str] = "epsilon_greedy"

    def __post_init__(self) -> None:
        if not 0.0 <= self.explore_share <= 1.0:
            raise ConfigError(f"epsilon_greedy: explore_share must be in [0, 1], got {self.explore_share}")
        if self.protected_slots < 0:
            raise ConfigError(f"epsilon_greedy: protected_slots must be >= 0, got {self.protected_slots}")

    def select_batch(self, scores: F64, k: int, keys: U64, counts: F64, totals: F64) -> tuple[I64, npt.NDArray[np.bool_]]:
        pos, explored = _head(scores, k)
        m = scores.shape[1]
        tail = m - k
        if tail <= 0 or self.explore_share == 0.0 or k == 0:
            return pos, explored
        n_valid = np.isfinite(scores).sum(axis=1)
        coins = uniform(keys, np.arange(k, dtype=np.uint64))
        slot = np.arange(k)[None, :]
        explore = (coins < self.explore_share) & (slot >= self.protected_slots) & (pos >= 0)
        order_keys = uniform(keys, np.arange(k, m, dtype=np.uint64))
        order_keys[np.arange(tail)[None, :] >= (n_valid - k)[:, None]] = np.inf  # invalid tail last
        perm = np.argsort(order_keys, axis=1, kind="stable")  # the tail in random order
        rank = np.cumsum(explore, axis=1) - 1
        explore &= rank < np.maximum(n_valid - k, 0)[:, None]
        drawn = k + np.take_along_axis(perm, np.clip(rank, 0, tail - 1), axis=1)
        return np.where(explore, drawn, pos), explore


@dataclass(frozen=True, slots=True)
class Thompson(_Selects):
    """Rank by ``score + N(0, (sigma / sqrt(1 + n_i))²)``: rarely-seen items are perturbed most."""

    sigma: float = 0.05
    seed: int = 0
    name: ClassVar[str] = "thompson"

    def __post_init__(self) -> None:
        if not (self.sigma >= 0.0 and math.isfinite(self.sigma)):
            raise ConfigError(f"thompson: sigma must be a finite number >= 0, got {self.sigma}")

    def select_batch(self, scores: F64, k: int, keys: U64, counts: F64, totals: F64) -> tuple[I64, npt.NDArray[np.bool_]]:
        noise = normal(keys, np.arange(scores.shape[1], dtype=np.uint64)) * (self.sigma / np.sqrt(1.0 + counts))
        return _by_perturbed(scores, scores + noise, k)


@dataclass(frozen=True, slots=True)
class UCB(_Selects):
    """Rank by ``score + c·sqrt(log(N + 1) / (n_i + 1))``; ``N`` is ``total`` or the sum of the counts."""

    ucb_c: float = 0.05
    name: ClassVar[str] = "ucb"

    def __post_init__(self) -> None:
        if not (self.ucb_c >= 0.0 and math.isfinite(self.ucb_c)):
            raise ConfigError(f"ucb: ucb_c must be a finite number >= 0, got {self.ucb_c}")

    def bonus(self, counts: F64, total: float | F64 | None = None) -> F64:
        """The optimism bonus of each candidate (exposed so the ranker can log it as a reason).

        ``total`` is all interactions so far (N); without it, the candidates' own counts are summed.
        """
        if total is None:
            total = float(np.asarray(counts).sum())
        n_total = np.maximum(np.asarray(total, np.float64), 0.0)
        return self.ucb_c * np.sqrt(np.log(n_total + 1.0) / (np.asarray(counts, np.float64) + 1.0))

    def select_batch(self, scores: F64, k: int, keys: U64, counts: F64, totals: F64) -> tuple[I64, npt.NDArray[np.bool_]]:
        return _by_perturbed(scores, scores + self.bonus(counts, totals[:, None]), k)


POLICIES: dict[str, Callable[..., Policy]] = {
    cls.name: cls for cls in (NoExploration, EpsilonGreedy, Thompson, UCB)  # type: ignore[misc]
}
"""Registry: policy name -> class whose dataclass fields are its parameters."""

POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)


def _param_types(name: str) -> dict[str, type]:
    cls = POLICIES[name]
    return {f.name: type(f.default) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def policy_params(name: str) -> tuple[str, ...]:
    """The parameter names a policy accepts (raises ConfigError for an unknown policy)."""
    if name not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; valid: {', '.join(POLICY_NAMES)}")
    return tuple(_param_types(name))


def make_policy(
    name: str, params: Mapping[str, float] | None = None, *, ignore_unknown: bool = False
) -> Policy:
    """Build a policy by name.

    Unknown parameters are a ConfigError (a typo would otherwise silently fall back to the default),
    unless ``ignore_unknown``: that is for shared parameter sets such as the config's, where
    ``explore_share`` means nothing to ``ucb``.
    """
    types = dict(zip(policy_params(name), _param_types(name).values(), strict=True))
    params = dict(params or {})
    unknown = sorted(set(params) - set(types))
    if unknown and not ignore_unknown:
        raise ConfigError(f"policy {name!r}: unknown parameters {unknown}; valid: {sorted(types)}")
    kwargs: dict[str, float | int] = {}
    for key, kind in types.items():
        if key not in params:
            continue
        value = params[key]
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            kwargs[key] = value  # exact, even for seeds beyond 2**53
            continue
        try:
            number = float(value)
            if kind is int:
                if isinstance(value, bool) or number != int(number):
                    raise ValueError("not an integer")
                kwargs[key] = int(number)
            else:
                kwargs[key] = number
        except (TypeError, ValueError, OverflowError) as exc:
            kind_name = "an integer" if kind is int else "a number"
            raise ConfigError(f"policy {name!r}: {key} must be {kind_name}, got {value!r}") from exc
    return POLICIES[name](**kwargs)

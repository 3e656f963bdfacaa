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

Every random draw comes from a generator seeded by a blake2b hash of ``(seed, person id, event id)``
(:func:`rng_for`), never from Python's salted ``hash``: a replayed event gets the same recommendations on
any worker, and an evaluation run is reproducible.

Each published item is a :class:`Pick` ``(item_id, score, explored)``; ``score`` is always the model's
relevance score (not the perturbed one), so scores stay comparable across policies and variants, and
``explored`` says whether the item is outside the plain top-K.

    >>> policy = make_policy("epsilon_greedy", {"explore_share": 0.0})
    >>> policy.select(["a", "b", "c"], [0.1, 0.9, 0.5], 2, exclude={"c"})
    [Pick(item_id='b', score=0.9, explored=False), Pick(item_id='a', score=0.1, explored=False)]
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from fusionrec.errors import ConfigError
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
    "rng_for",
    "make_policy",
    "policy_params",
]


class Pick(NamedTuple):
    """One published slot: the item, its relevance score, and whether it was chosen to explore."""

    item_id: str
    score: float
    explored: bool


def rng_for(seed: int, person_id: str, event_id: str) -> np.random.Generator:
    """A generator that is a pure function of ``(seed, person, event)``.

    blake2b rather than ``hash()``: Python salts string hashes per process, which would give each
    worker (and each replay) different draws.  Fields are length-prefixed so ``("ab", "c")`` and
    ``("a", "bc")`` do not collide.
    """
    h = hashlib.blake2b(digest_size=16, person=b"fusionrec-rng")
    for part in (str(int(seed)), person_id, event_id):
        raw = part.encode()
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return np.random.default_rng(int.from_bytes(h.digest(), "little"))


class Policy(Protocol):
    """What the ranker calls.  Implementations filter ``exclude``, duplicates and non-finite scores themselves."""

    name: ClassVar[str]

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


class _Prepared(NamedTuple):
    items: list[str]
    scores: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    order: npt.NDArray[np.intp]  # indices into items, best score first


def _prepare(
    items: Sequence[str], scores: npt.ArrayLike, exclude: Collection[str], counts: npt.ArrayLike | None
) -> _Prepared:
    """Drop what must never be published and sort the rest by relevance."""
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
    kept_items = [items[i] for i in idx]
    kept_scores = values[idx]
    return _Prepared(kept_items, kept_scores, n[idx], order_by_score(kept_scores))


def _picks(prep: _Prepared, chosen: npt.NDArray[np.intp] | Sequence[int], explored: Sequence[bool]) -> list[Pick]:
    return [Pick(prep.items[i], float(prep.scores[i]), bool(e)) for i, e in zip(chosen, explored, strict=True)]


def _by_perturbed(prep: _Prepared, perturbed: npt.NDArray[np.float64], k: int) -> list[Pick]:
    """Top-K by a perturbed score; an item explores when it is not in the plain top-K."""
    exploit = set(prep.order[:k].tolist())
    chosen = np.argsort(-perturbed, kind="stable")[:k]
    return _picks(prep, chosen, [int(i) not in exploit for i in chosen])


def _check_k(k: int) -> None:
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")


@dataclass(frozen=True, slots=True)
class NoExploration:
    """Top-K by relevance; the control arm."""

    name: ClassVar[str] = "none"

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
        _check_k(k)
        prep = _prepare(items, scores, exclude, counts)
        chosen = prep.order[:k]
        return _picks(prep, chosen, [False] * len(chosen))


@dataclass(frozen=True, slots=True)
class EpsilonGreedy:
    """Each unprotected slot explores with probability ``explore_share``.

    The draws are made in a fixed pattern (one uniform per slot, one permutation of the tail) whatever
    their outcome, so the same person, seed and event always yield the same list.
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
        _check_k(k)
        prep = _prepare(items, scores, exclude, counts)
        head = prep.order[:k].copy()
        tail = prep.order[k:]
        explored = [False] * len(head)
        if len(head) == 0 or len(tail) == 0 or self.explore_share == 0.0:
            return _picks(prep, head, explored)
        rng = rng_for(self.seed, person_id, event_id)
        coins = rng.random(len(head))
        draws = tail[rng.permutation(len(tail))]
        used = 0
        for slot in range(min(self.protected_slots, len(head)), len(head)):
            if coins[slot] < self.explore_share and used < len(draws):
                head[slot] = draws[used]
                explored[slot] = True
                used += 1
        return _picks(prep, head, explored)


@dataclass(frozen=True, slots=True)
class Thompson:
    """Rank by ``score + N(0, (sigma / sqrt(1 + n_i))²)``: rarely-seen items are perturbed most."""

    sigma: float = 0.05
    seed: int = 0
    name: ClassVar[str] = "thompson"

    def __post_init__(self) -> None:
        if not (self.sigma >= 0.0 and math.isfinite(self.sigma)):
            raise ConfigError(f"thompson: sigma must be a finite number >= 0, got {self.sigma}")

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
        _check_k(k)
        prep = _prepare(items, scores, exclude, counts)
        rng = rng_for(self.seed, person_id, event_id)
        noise = rng.standard_normal(len(prep.items)) * (self.sigma / np.sqrt(1.0 + prep.counts))
        return _by_perturbed(prep, prep.scores + noise, k)


@dataclass(frozen=True, slots=True)
class UCB:
    """Rank by ``score + c·sqrt(log(N + 1) / (n_i + 1))``; ``N`` is ``total`` or the sum of the counts."""

    ucb_c: float = 0.05
    name: ClassVar[str] = "ucb"

    def __post_init__(self) -> None:
        if not (self.ucb_c >= 0.0 and math.isfinite(self.ucb_c)):
            raise ConfigError(f"ucb: ucb_c must be a finite number >= 0, got {self.ucb_c}")

    def bonus(self, counts: npt.NDArray[np.float64], total: float | None = None) -> npt.NDArray[np.float64]:
        """The optimism bonus of each candidate (exposed so the ranker can log it as a reason).

        ``total`` is all interactions so far (N); without it, the candidates' own counts are summed.
        """
        n_total = float(counts.sum()) if total is None or not math.isfinite(total) else max(float(total), 0.0)
        return self.ucb_c * np.sqrt(math.log(n_total + 1.0) / (counts + 1.0))

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
        _check_k(k)
        prep = _prepare(items, scores, exclude, counts)
        return _by_perturbed(prep, prep.scores + self.bonus(prep.counts, total), k)


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

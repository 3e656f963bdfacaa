"""The ranking policy as the processing core applies it: variant → re-rank → exploration → top-K.

For each request the person's A/B variant (or, without an experiment, the platform's configured
policy) names an exploration policy and the re-rank weights.  The learner's best ``candidates`` items
are re-ordered for diversity and novelty (:mod:`fusionrec.policy.rerank`, the tail kept so that
exploration still has something to draw from), then the policy picks the published top-K
(:mod:`fusionrec.policy.exploration`).  Already-consumed items are dropped at every step.

Last, the new-item slot (:mod:`fusionrec.policy.new_items`) makes sure the list shows one item
nobody has interacted with yet at ``new_item_position`` or above; the learner hands over its best
new items below the top K for that (:meth:`PolicyRanker.new_items`), and the core hands the chosen
list to :meth:`PolicyRanker.with_new_item`.

The pure-exploitation configuration (policy ``none``, ``mmr_lambda = 1``, ``novelty_weight = 0``)
takes the learner's own top-K, so it needs no extra candidates (:meth:`PolicyRanker.fetch`); only
the new-item slot, when it is on, changes that list.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusionrec.policy.ab import Variant, assign, parse_variants
from fusionrec.policy.exploration import Pick, Policy, make_policy
from fusionrec.policy.new_items import place_new_item
from fusionrec.policy.rerank import rerank

__all__ = ["Arm", "PolicyRanker"]

Vectors = Callable[[Sequence[str]], npt.NDArray[np.float32]]
Counts = Callable[[str, Sequence[str]], tuple[npt.NDArray[np.float64], float]]
IsNew = Callable[[str, Sequence[str]], npt.NDArray[np.bool_]]


@dataclass(frozen=True)
class Arm:
    """What one person gets on one platform: the variant name (None without an experiment) and its knobs."""

    variant: str | None
    policy: Policy
    mmr_lambda: float
    novelty_weight: float
    new_item_position: int = 0  # 1-based; 0 = no new-item slot

    @property
    def exploits_only(self) -> bool:
        return self.policy.name == "none" and self.mmr_lambda == 1.0 and self.novelty_weight == 0.0


class PolicyRanker:
    """Chooses each published top-K from scored candidates, per the ``[policy]`` config section
    (:meth:`choose`, then the new-item slot: :meth:`with_new_item`)."""

    def __init__(self, policy_cfg: object, platforms: Sequence[str]) -> None:
        from fusionrec.config import PolicyConfig

        cfg = policy_cfg if isinstance(policy_cfg, PolicyConfig) else PolicyConfig()
        self.cfg = cfg
        self.candidates = cfg.candidates
        shared = cfg.params()
        self._variants: tuple[Variant, ...] = parse_variants(cfg.variants)
        self._variant_arms = {
            v.name: Arm(
                v.name,
                v.make_policy(shared),
                v.rerank_param("mmr_lambda", cfg.mmr_lambda),
                v.rerank_param("novelty_weight", cfg.novelty_weight),
                int(v.rerank_param("new_item_position", cfg.new_item_position)),
            )
            for v in self._variants
        }
        self._platform_arms: dict[str, Arm] = {}
        for platform in (*platforms, ""):
            name = cfg.policy_for(platform) if platform else cfg.name
            self._platform_arms[platform] = Arm(
                None, make_policy(name, shared, ignore_unknown=True), cfg.mmr_lambda, cfg.novelty_weight, cfg.new_item_position
            )

    @property
    def any_new_slot(self) -> bool:
        """Whether some arm shows a new-item slot."""
        return any(a.new_item_position > 0 for a in (*self._variant_arms.values(), *self._platform_arms.values()))

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self._variants)

    def arm(self, person_id: str, platform: str) -> Arm:
        """The person's variant when an experiment runs, else the platform's policy."""
        if self._variants:
            return self._variant_arms[assign(person_id, self._variants, self.cfg.ab_salt).name]
        return self._platform_arms.get(platform) or self._platform_arms[""]

    def fetch(self, k: int, arms: Sequence[Arm]) -> int:
        """Candidates to score for a batch whose requests get ``arms``."""
        return k if all(a.exploits_only for a in arms) else max(k, self.candidates)

    def new_items(self, arms: Sequence[Arm]) -> int:
        """New items the learner adds below the candidates, for the new-item slot (0 when no arm has one)."""
        return 1 if any(a.new_item_position > 0 for a in arms) else 0

    def with_new_item(
        self,
        arm: Arm,
        picks: list[Pick],
        candidates: Sequence[tuple[str, float]],
        k: int,
        *,
        platform: str,
        consumed: Collection[str],
        is_new: IsNew,
    ) -> list[Pick]:
        """``picks`` (what :meth:`choose` published) with the arm's new-item slot filled from ``candidates``;
        ``is_new`` says which items nobody has interacted with yet."""
        if arm.new_item_position <= 0 or not candidates:
            return picks
        items = [i for i, _ in candidates]
        new = {i for i, flag in zip(items, is_new(platform, items)) if flag}
        return place_new_item(picks, candidates, k, arm.new_item_position, new=new, exclude=consumed)

    def choose(
        self,
        arm: Arm,
        candidates: Sequence[tuple[str, float]],
        k: int,
        *,
        person_id: str,
        event_id: str,
        platform: str,
        consumed: Collection[str],
        vectors: Vectors,
        counts: Counts,
    ) -> list[Pick]:
        """The published top-``k`` of ``candidates`` (best first by the learner) for this arm."""
        if not candidates:
            return []
        if arm.exploits_only:
            return [Pick(i, s, False) for i, s in candidates[:k] if i not in consumed]
        items = [i for i, _ in candidates]
        scores = np.array([s for _, s in candidates], dtype=np.float64)
        if arm.policy.name in ("thompson", "ucb") or arm.novelty_weight != 0.0:
            pop, total = counts(platform, items)
        else:
            pop, total = np.zeros(len(items)), 0.0  # neither the policy nor the re-rank reads them
        if arm.mmr_lambda != 1.0 or arm.novelty_weight != 0.0:
            reordered = rerank(
                items,
                scores,
                vectors(items),
                k,
                lam=arm.mmr_lambda,
                novelty_weight=arm.novelty_weight,
                popularity=pop,
                exclude=consumed,
                keep_rest=True,
            )
            position = {item: n for n, item in enumerate(items)}
            items = [i for i, _ in reordered]
            pop = pop[[position[i] for i in items]]
            # the policy ranks by score: the item at re-ranked position j gets the j-th best learner
            # score, so the re-ranked order is the exploit order and the exploration noise keeps its
            # scale; the published scores are the learner's own
            relevance = dict(reordered)
            order_scores = np.sort(np.array([relevance[i] for i in items], dtype=np.float64))[::-1].copy()
            picks = arm.policy.select(
                items, order_scores, k, person_id=person_id, event_id=event_id, exclude=consumed, counts=pop, total=total
            )
            return [Pick(p.item_id, relevance[p.item_id], p.explored) for p in picks]
        return arm.policy.select(
            items, scores, k, person_id=person_id, event_id=event_id, exclude=consumed, counts=pop, total=total
        )

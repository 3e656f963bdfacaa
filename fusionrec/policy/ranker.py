"""Which policy each request gets: the person's A/B variant, else the platform's configured policy.

An :class:`Arm` names an exploration policy (:mod:`fusionrec.policy.exploration`), the re-rank weights
(:mod:`fusionrec.policy.rerank`: MMR diversity and a novelty penalty) and the position of the new-item
slot (every list shows one item nobody has interacted with yet at ``new_item_position`` or above).
The core applies them to a whole batch in :mod:`fusionrec.pipeline.choose`.

The pure-exploitation configuration (policy ``none``, ``mmr_lambda = 1``, ``novelty_weight = 0``) takes
the model's own top-K, so it needs no extra candidates (:meth:`PolicyRanker.fetch`); only the
new-item slot, when it is on, changes that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fusionrec.policy.ab import Variant, assign, parse_variants
from fusionrec.policy.exploration import Policy, make_policy

__all__ = ["Arm", "PolicyRanker"]


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
    """The arms of the ``[policy]`` config section (per A/B variant and per platform)."""

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

    def arm(self, person_id: str, platform: str) -> Arm:
        """The person's variant when an experiment runs, else the platform's policy."""
        if self._variants:
            return self._variant_arms[assign(person_id, self._variants, self.cfg.ab_salt).name]
        return self._platform_arms.get(platform) or self._platform_arms[""]

    def fetch(self, k: int, arms: Sequence[Arm]) -> int:
        """Candidates to keep for a batch whose requests get ``arms``."""
        return k if all(a.exploits_only for a in arms) else max(k, self.candidates)

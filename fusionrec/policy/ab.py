"""A/B assignment: every person lands in one variant, always the same one, on every worker.

A person's bucket is a blake2b hash of ``(salt, person id)`` read as a number in ``[0, 1)``, then
mapped onto the variants' cumulative shares.  A stable hash, not Python's per-process salted
``hash()``: a person must see one variant across workers, restarts and offline replays, or the
comparison between variants measures the mixing, not the variants.  Changing the salt reshuffles
everyone (a new experiment); changing shares moves only the people at the boundaries.

Variants are written compactly so they fit in one environment variable::

    name:policy:share[:key=value;key=value...]

    >>> vs = parse_variants("control:none:0.5,explore:epsilon_greedy:0.5:explore_share=0.1")
    >>> [v.name for v in vs], vs[1].params["explore_share"]
    (['control', 'explore'], 0.1)
    >>> assign("person-42", vs).name in {"control", "explore"}
    True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from fusionrec.errors import ConfigError
from fusionrec.policy.exploration import POLICY_NAMES, Policy, make_policy, policy_params

__all__ = ["Variant", "RERANK_PARAMS", "bucket", "assign", "parse_variants", "validate_variants"]

RERANK_PARAMS = ("mmr_lambda", "novelty_weight", "new_item_position")
"""Variant parameters that shape the list (re-rank, new-item slot) rather than the exploration policy."""

SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: who gets it (``share``) and what they get (policy + params).

    ``params`` may hold the policy's own parameters (e.g. ``explore_share``) and the list's
    (``mmr_lambda``, ``novelty_weight``, ``new_item_position``); anything else is a ConfigError, so a typo cannot silently
    turn an arm into the control.
    """

    name: str
    policy: str
    share: float
    params: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ConfigError(f"variant name {self.name!r} is not valid (letters, digits, '-', '_')")
        if self.policy not in POLICY_NAMES:
            valid_names = ", ".join(POLICY_NAMES)
            raise ConfigError(f"variant {self.name!r}: unknown policy {self.policy!r}; valid: {valid_names}")
        if not (math.isfinite(self.share) and self.share > 0.0):
            raise ConfigError(f"variant {self.name!r}: share must be > 0, got {self.share}")
        valid = set(policy_params(self.policy)) | set(RERANK_PARAMS)
        unknown = sorted(set(self.params) - valid)
        if unknown:
            raise ConfigError(f"variant {self.name!r}: unknown parameters {unknown}; valid: {sorted(valid)}")
        lam = self.params.get("mmr_lambda", 1.0)
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"variant {self.name!r}: mmr_lambda must be in [0, 1], got {lam}")
        if not self.params.get("novelty_weight", 0.0) >= 0.0:
            raise ConfigError(f"variant {self.name!r}: novelty_weight must be >= 0")
        position = self.params.get("new_item_position", 0)
        if not (position >= 0 and float(position).is_integer()):
            raise ConfigError(f"variant {self.name!r}: new_item_position must be an integer >= 0, got {position}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        self.make_policy()  # range checks of the policy's own parameters

    @property
    def policy_params(self) -> dict[str, float]:
        """The parameters the exploration policy takes."""
        return {k: v for k, v in self.params.items() if k not in RERANK_PARAMS}

    def make_policy(self, defaults: Mapping[str, float] | None = None) -> Policy:
        """The variant's policy; ``defaults`` (e.g. the config's shared params) fill what the variant leaves out."""
        merged = {k: v for k, v in (defaults or {}).items() if k in policy_params(self.policy)}
        merged.update(self.policy_params)
        return make_policy(self.policy, merged)

    def rerank_param(self, key: str, default: float) -> float:
        """``mmr_lambda``, ``novelty_weight`` or ``new_item_position`` for this variant, else the config-wide ``default``."""
        if key not in RERANK_PARAMS:
            raise KeyError(key)
        return float(self.params.get(key, default))


def bucket(person_id: str, salt: str = "") -> float:
    """The person's position in ``[0, 1)``: 53 bits of blake2b, so every float in range is reachable evenly."""
    h = hashlib.blake2b(digest_size=8, person=b"fusionrec-ab")
    raw_salt = salt.encode()
    h.update(len(raw_salt).to_bytes(8, "little"))
    h.update(raw_salt)
    h.update(person_id.encode())
    return (int.from_bytes(h.digest(), "little") >> 11) / float(1 << 53)


def validate_variants(variants: Sequence[Variant]) -> None:
    """Shares positive (each Variant checks its own) and summing to 1; names unique."""
    if not variants:
        raise ConfigError("at least one variant is required")
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"variant names must be unique; repeated: {duplicates}")
    total = math.fsum(v.share for v in variants)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        listed = ", ".join(f"{v.name}={v.share:g}" for v in variants)
        raise ConfigError(f"variant shares must sum to 1, got {total:g} ({listed})")


def assign(person_id: str, variants: Sequence[Variant], salt: str = "") -> Variant:
    """The variant of ``person_id``: the first whose cumulative share exceeds the person's bucket."""
    validate_variants(variants)
    b = bucket(person_id, salt)
    edge = 0.0
    for v in variants:
        edge += v.share
        if b < edge:
            return v
    return variants[-1]  # shares sum to 1 within rounding: the last edge may fall a hair short of 1


def _parse_params(text: str, where: str) -> dict[str, float]:
    params: dict[str, float] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: parameter {part!r} is not key=value")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{where}: parameter {key.strip()!r} is not a number: {value!r}") from None
    return params


def parse_variants(spec: str) -> tuple[Variant, ...]:
    """Parse ``name:policy:share[:key=value;...]`` entries separated by commas; empty -> ``()``.

    The result is validated (known policies and parameters, positive shares summing to 1).
    """
    variants = []
    for entry in spec.split(","):
        if not entry.strip():
            continue
        fields = [f.strip() for f in entry.split(":")]
        if len(fields) not in (3, 4):
            raise ConfigError(f"variant {entry.strip()!r} must be name:policy:share[:key=value;...]")
        name, policy, share_text = fields[:3]
        try:
            share = float(share_text)
        except ValueError:
            raise ConfigError(f"variant {name!r}: share {share_text!r} is not a number") from None
        params = _parse_params(fields[3], f"variant {name!r}") if len(fields) == 4 else {}
        variants.append(Variant(name=name, policy=policy, share=share, params=params))
    if variants:
        validate_variants(variants)
    return tuple(variants)

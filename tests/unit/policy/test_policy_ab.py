"""A/B assignment: stable, proportional to the shares, validated."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from fusionrec.errors import ConfigError
from fusionrec.policy.ab import Variant, assign, bucket, parse_variants, validate_variants
from fusionrec.policy.exploration import EpsilonGreedy, NoExploration


@pytest.mark.parametrize(
    "spec, shares",
    [
        ("control:none:0.5,explore:epsilon_greedy:0.5", {"control": 0.5, "explore": 0.5}),
        ("a:none:0.2,b:ucb:0.3,c:thompson:0.5", {"a": 0.2, "b": 0.3, "c": 0.5}),
        ("a:none:0.9,b:epsilon_greedy:0.1", {"a": 0.9, "b": 0.1}),
    ],
)
def test_split_of_10000_ids_is_within_two_percent(spec: str, shares: dict[str, float]) -> None:
    variants = parse_variants(spec)
    counts = Counter(assign(f"person-{n}", variants).name for n in range(10_000))
    for name, share in shares.items():
        assert counts[name] / 10_000 == pytest.approx(share, abs=0.02), (name, counts)


def test_assignment_is_stable_across_processes() -> None:
    """Python's hash() is salted per process; the A/B hash must not be."""
    code = "from fusionrec.policy.ab import bucket; print(repr(bucket('person-1', 'exp')))"
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert outputs == {repr(bucket("person-1", "exp")) + "\n"}


def test_bucket_range_and_salt() -> None:
    values = [bucket(f"p{n}") for n in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert sum(v < 0.5 for v in values) / 2000 == pytest.approx(0.5, abs=0.05)
    assert bucket("p1", "exp-a") != bucket("p1", "exp-b")
    variants = parse_variants("a:none:0.5,b:none:0.5")
    moved = sum(assign(f"p{n}", variants, "s1").name != assign(f"p{n}", variants, "s2").name for n in range(1000))
    assert 350 < moved < 650  # a new salt reshuffles about half of a 50/50 split


def test_parse_params_and_policy() -> None:
    (control, explore) = parse_variants(
        "control:none:0.5, explore:epsilon_greedy:0.5:explore_share=0.2;mmr_lambda=0.8;novelty_weight=0.01"
    )
    assert control == Variant("control", "none", 0.5)
    assert explore.params == {"explore_share": 0.2, "mmr_lambda": 0.8, "novelty_weight": 0.01}
    assert explore.policy_params == {"explore_share": 0.2}
    assert explore.rerank_param("mmr_lambda", 1.0) == 0.8
    assert control.rerank_param("mmr_lambda", 0.95) == 0.95
    assert control.make_policy() == NoExploration()
    assert explore.make_policy({"protected_slots": 3, "ucb_c": 1.0}) == EpsilonGreedy(
        explore_share=0.2, protected_slots=3
    )
    assert parse_variants("") == ()


@pytest.mark.parametrize(
    "spec, words",
    [
        ("a:none:0.5,b:none:0.4", ["sum to 1", "a=0.5", "b=0.4"]),
        ("a:none:1.2,b:none:-0.2", ["share", "> 0"]),
        ("a:none:0,b:none:1", ["share"]),
        ("a:none:0.5,a:ucb:0.5", ["unique", "a"]),
        ("a:greedy:1", ["greedy", "epsilon_greedy"]),
        ("a:none", ["name:policy:share"]),
        ("a:none:half", ["half"]),
        ("a:none:1:explore_share=0.1", ["explore_share"]),  # 'none' takes no such parameter
        ("a:epsilon_greedy:1:explore_share", ["key=value"]),
        ("a:epsilon_greedy:1:explore_share=x", ["explore_share"]),
        ("a:epsilon_greedy:1:explore_share=2", ["explore_share"]),
        ("a:none:1:mmr_lambda=2", ["mmr_lambda"]),
        ("a b:none:1", ["a b"]),
    ],
)
def test_bad_variants_are_config_errors(spec: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_variants(spec)
    for word in words:
        assert word in str(info.value)


def test_validate_needs_a_variant() -> None:
    with pytest.raises(ConfigError):
        validate_variants([])
    with pytest.raises(ConfigError):
        assign("p", [])

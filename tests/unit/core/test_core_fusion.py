"""Fusion math: decay, event weights, per-platform profiles, the fused unit vector, bounded memory, state bytes.

Profiles keep their direction in float16 (``fusionrec.state``): a profile's ``vec`` equals the exact
sum up to float16 rounding of the direction (relative ``F16``), while fused vectors mix the stored
directions exactly.  Items and event ids are kept as their 64-bit hashes (``H``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionrec.config import DEFAULT_EVENT_WEIGHTS
from fusionrec.errors import DecodeError
from fusionrec.fusion import (
    RECENT_PER_PLATFORM,
    FusionParams,
    PersonState,
    event_weight,
    fused_vector,
    learn,
    mix_vector,
    platform_mix,
)
from fusionrec.hashing import stable_hash as H

FUZZ_EXAMPLES = int(os.environ.get("FUSIONREC_FUZZ_EXAMPLES", "500"))
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

DAY = 86400.0
PARAMS = FusionParams(half_life_s=DAY)
E0 = np.array([1, 0, 0, 0], np.float32)
E1 = np.array([0, 1, 0, 0], np.float32)
E2 = np.array([0, 0, 1, 0], np.float32)
F16 = 2.0**-10
"""Relative error of a profile vector after a few folds: float16 keeps 11 significant bits (2^-11 per
rounding), and each fold rounds once more."""


def unit(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def feed(state: PersonState, platform: str, item: str, vec: np.ndarray, *, weight: float = 1.0, ts: float = 0.0,
         params: FusionParams = PARAMS, event_id: str | None = None) -> None:
    learn(state, platform=platform, item=H(item), vector=vec, weight=weight, ts=ts, params=params,
          event=H(event_id) if event_id is not None else None)  # fmt: skip


# ------------------------------------------------------------------------------------ event weight


@pytest.mark.parametrize(
    "stars, expected", [(5.0, 1.0), (2.5, 0.0), (0.0, -1.0), (1.0, -0.6), (4.0, 0.6), (3.75, 0.5)]
)
def test_rating_is_centred_at_two_and_a_half(stars: float, expected: float) -> None:
    assert event_weight("rating", stars, {"rating": 1.0}) == pytest.approx(expected)
    assert event_weight("rating", stars, {"rating": 2.0}) == pytest.approx(2 * expected)
    assert event_weight("rating", stars, DEFAULT_EVENT_WEIGHTS) == pytest.approx(DEFAULT_EVENT_WEIGHTS["rating"] * expected)


def test_event_weight_of_other_types() -> None:
    w = DEFAULT_EVENT_WEIGHTS
    assert event_weight("click", None, w) == 1.0
    assert event_weight("purchase", None, w) == 3.0
    assert event_weight("view", 5.0, w) == 0.5  # the value only matters for ratings
    assert event_weight("rating", None, w) == w["rating"]  # a rating without stars counts as a plain rating
    assert event_weight("share", None, w) == 1.0  # unknown types weigh 1
    assert event_weight("click", None, {}) == 1.0


# -------------------------------------------------------------------------------------- decay


def test_one_half_life_halves_the_past() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "a", E0, ts=0.0)
    feed(s, "shop", "b", E1, ts=DAY)
    profile = s.profiles["shop"]
    np.testing.assert_allclose(profile.vec, [0.5, 1.0, 0, 0], rtol=F16)
    assert profile.mass == pytest.approx(1.5) and profile.ts == DAY and profile.n == 2


def test_two_half_lives_quarter_the_past() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "a", E0, ts=0.0, weight=4.0)
    feed(s, "shop", "b", E1, ts=2 * DAY)
    np.testing.assert_allclose(s.profiles["shop"].vec, [1.0, 1.0, 0, 0], rtol=F16)
    assert s.profiles["shop"].mass == pytest.approx(2.0)


def test_a_late_event_does_not_decay_or_rewind_the_profile() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "a", E0, ts=DAY)
    feed(s, "shop", "b", E1, ts=0.0)  # older than the profile
    np.testing.assert_allclose(s.profiles["shop"].vec, [1.0, 1.0, 0, 0], rtol=F16)
    assert s.profiles["shop"].ts == DAY and s.last_ts == DAY


def test_mass_decays_until_query_time() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "a", E0, ts=0.0)
    alpha_now, _ = platform_mix(s, "video", now=0.0, params=PARAMS)["shop"]
    alpha_later, _ = platform_mix(s, "video", now=DAY, params=PARAMS)["shop"]
    assert alpha_now == pytest.approx(1 / 2)  # mass 1 -> 1 / (1 + 1)
    assert alpha_later == pytest.approx(0.5 / 1.5)  # mass 0.5 after one half-life


def test_negative_weight_pushes_away_and_counts_as_mass() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "a", E0, weight=-1.0)
    assert s.profiles["shop"].mass == 1.0
    np.testing.assert_allclose(fused_vector(s, "shop", 0.0, PARAMS), -E0)


# -------------------------------------------------------------------------------------- fusion


def test_no_history_gives_no_vector() -> None:
    assert fused_vector(PersonState.new("p"), "shop", 0.0, PARAMS) is None
    assert mix_vector({}) is None


def test_a_neutral_rating_gives_no_vector() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "a", E0, weight=event_weight("rating", 2.5, DEFAULT_EVENT_WEIGHTS))
    assert platform_mix(s, "shop", 0.0, PARAMS) == {}
    assert fused_vector(s, "shop", 0.0, PARAMS) is None
    assert H("a") in s.consumed  # but the item is still consumed


def test_hand_computed_fusion() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "i1", E0)
    feed(s, "video", "v1", E1)
    # alpha: mass 1 -> 0.5; target platform doubled -> 1.0
    np.testing.assert_allclose(fused_vector(s, "shop", 0.0, PARAMS), np.array([2, 1, 0, 0]) / math.sqrt(5), rtol=1e-6)
    np.testing.assert_allclose(fused_vector(s, "video", 0.0, PARAMS), np.array([1, 2, 0, 0]) / math.sqrt(5), rtol=1e-6)
    # a platform never seen: both profiles weigh the same
    np.testing.assert_allclose(fused_vector(s, "music", 0.0, PARAMS), np.array([1, 1, 0, 0]) / math.sqrt(2), rtol=1e-6)


def test_profiles_are_mixed_by_direction_not_magnitude() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "i1", 10 * E0)  # a long vector does not dominate by its length
    feed(s, "video", "v1", E1)
    mix = platform_mix(s, "music", 0.0, PARAMS)
    np.testing.assert_allclose(mix["shop"][1], E0)
    assert mix["shop"][0] == mix["video"][0]


@pytest.mark.parametrize("boost", [1.0, 2.0, 5.0, 50.0])
def test_same_platform_boost_makes_the_target_dominate(boost: float) -> None:
    params = FusionParams(half_life_s=DAY, same_platform_boost=boost)
    s = PersonState.new("p")
    feed(s, "shop", "i1", E0, params=params)
    feed(s, "video", "v1", E1, params=params)
    for target, own, other in (("shop", 0, 1), ("video", 1, 0)):
        fused = fused_vector(s, target, 0.0, params)
        assert fused is not None
        assert fused[own] / fused[other] == pytest.approx(boost, rel=1e-5)
        if boost > 1:
            assert fused[own] > fused[other]


def test_boost_overcomes_a_heavier_other_platform() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "i1", E0, weight=1.0)
    feed(s, "video", "v1", E1, weight=3.0)  # alpha 0.75 vs 0.5 before the boost
    fused = fused_vector(s, "shop", 0.0, FusionParams(half_life_s=DAY, same_platform_boost=2.0))
    assert fused is not None and fused[0] > fused[1]
    fused = fused_vector(s, "shop", 0.0, FusionParams(half_life_s=DAY, same_platform_boost=1.0))
    assert fused is not None and fused[0] < fused[1]


def test_platform_weights_scale_and_can_silence_a_platform() -> None:
    s = PersonState.new("p")
    feed(s, "shop", "i1", E0)
    feed(s, "video", "v1", E1)
    silent = FusionParams(half_life_s=DAY, platform_weights={"video": 0.0})
    np.testing.assert_allclose(fused_vector(s, "shop", 0.0, silent), E0)
    # silencing every platform leaves nothing
    none = FusionParams(half_life_s=DAY, platform_weights={"video": 0.0, "shop": 0.0})
    assert fused_vector(s, "shop", 0.0, none) is None


def test_fused_vector_is_unit_norm_float32() -> None:
    s = PersonState.new("p")
    for i in range(30):
        feed(s, ["shop", "video", "music"][i % 3], f"i{i}", unit(i), weight=(i % 5) - 1.5, ts=i * 3600.0)
    for target in ("shop", "video", "music", "other"):
        fused = fused_vector(s, target, 30 * 3600.0, PARAMS)
        assert fused is not None and fused.dtype == np.float32 and fused.shape == (16,)
        assert float(np.linalg.norm(fused)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("years", [1, 5, 7, 10, 30])
def test_a_long_idle_history_still_gives_a_unit_vector(years: int) -> None:
    """Regression: the mix was summed in float32, so after ~7 idle years (30-day half-life) the tiny
    alphas squared to 0 and the person got no vector at all (``Recommender.rank`` returned nothing)."""
    params = FusionParams(half_life_s=30 * DAY)
    s = PersonState.new("p")
    feed(s, "shop", "a", unit(1), params=params)
    feed(s, "video", "b", unit(2), params=params)
    fused = fused_vector(s, "shop", years * 365 * DAY, params)
    assert fused is not None
    assert float(np.linalg.norm(fused)) == pytest.approx(1.0, abs=1e-6)
    # both alphas decayed alike: the direction is still the boosted mix of the stored directions...
    stored = {name: p.unit.astype(np.float32) for name, p in s.profiles.items()}
    expected = 2 * stored["shop"] + stored["video"]
    np.testing.assert_allclose(fused, expected / np.linalg.norm(expected), atol=1e-6)
    # ...which are the items' own directions up to float16 rounding
    exact = 2 * unit(1) + unit(2)
    np.testing.assert_allclose(fused, exact / np.linalg.norm(exact), atol=F16)


# ------------------------------------------------------------------------------------- bounds


def test_consumed_keeps_the_newest_items_in_order() -> None:
    params = FusionParams(half_life_s=DAY, max_consumed=3)
    s = PersonState.new("p")
    for i in range(5):
        feed(s, "shop", f"i{i}", E0, params=params)
    assert s.consumed == [H("i2"), H("i3"), H("i4")]
    feed(s, "shop", "i2", E0, params=params)  # touching an item again makes it the newest
    assert s.consumed == [H("i3"), H("i4"), H("i2")]
    feed(s, "video", "v0", E1, params=params)  # one bound across platforms
    assert s.consumed == [H("i4"), H("i2"), H("v0")]


def test_recent_events_keep_the_newest_ids() -> None:
    params = FusionParams(half_life_s=DAY, max_recent_events=2)
    s = PersonState.new("p")
    for i in range(4):
        feed(s, "shop", f"i{i}", E0, params=params, event_id=f"e{i}")
    assert s.recent_events == [H("e2"), H("e3")]
    feed(s, "shop", "x", E0, params=params)  # no event id: nothing remembered
    assert s.recent_events == [H("e2"), H("e3")]


def test_recent_items_per_platform_are_bounded() -> None:
    s = PersonState.new("p")
    for i in range(RECENT_PER_PLATFORM + 5):
        feed(s, "shop", f"i{i}", E0)
    feed(s, "shop", "i10", E0)
    recent = s.profiles["shop"].recent
    assert len(recent) == RECENT_PER_PLATFORM and recent[-1] == H("i10") and recent.count(H("i10")) == 1
    assert recent[0] == H("i5")
    assert s.profiles["shop"].n == RECENT_PER_PLATFORM + 6


@fuzz
@given(
    items=st.lists(st.integers(0, 30), max_size=80),
    max_consumed=st.integers(1, 10),
    max_recent=st.integers(1, 10),
)
def test_bounded_sets_hold_the_last_distinct_keys(items: list[int], max_consumed: int, max_recent: int) -> None:
    params = FusionParams(half_life_s=DAY, max_consumed=max_consumed, max_recent_events=max_recent)
    s = PersonState.new("p")
    for n, i in enumerate(items):
        feed(s, "shop", f"i{i}", E0, params=params, event_id=f"e{i}")
    last_distinct = list(dict.fromkeys(reversed(items)))[::-1]
    assert s.consumed == [H(f"i{i}") for i in last_distinct[-max_consumed:]]
    assert s.recent_events == [H(f"e{i}") for i in last_distinct[-max_recent:]]


# -------------------------------------------------------------------------------------- bytes


def assert_same_state(a: PersonState, b: PersonState) -> None:
    assert a.person_id == b.person_id
    assert a.consumed == b.consumed and a.recent_events == b.recent_events and a.seq == b.seq
    assert a.last_ts == b.last_ts
    assert a.profiles.keys() == b.profiles.keys()
    for name, pa in a.profiles.items():
        pb = b.profiles[name]
        assert pb.vec.dtype == np.float32
        np.testing.assert_allclose(pa.vec, pb.vec, rtol=0, atol=0)
        assert (pa.norm, pa.mass, pa.ts, pa.recent, pa.n) == (pb.norm, pb.mass, pb.ts, pb.recent, pb.n)


def test_new_state_round_trips() -> None:
    s = PersonState.new("p")
    back = PersonState.from_bytes("p", s.to_bytes())
    assert_same_state(s, back)
    assert back.last_ts == float("-inf")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"p":"x","t":null,"c":[],"e":[],"pr":{}}',  # the JSON state of earlier versions
        b"",
        b"F",
        PersonState.new("x").to_bytes() + b"\x00",  # trailing bytes
    ],
    ids=["old-json", "empty", "magic-only", "trailing"],
)
def test_a_state_that_does_not_decode_is_a_bad_state(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        PersonState.from_bytes("x", raw)
    assert info.value.reason == "bad_state" and "'x'" in info.value.detail


def test_state_round_trips() -> None:
    s = PersonState.new("person/é")
    for i in range(25):
        feed(s, ["shop", "video"][i % 2], f"i{i}", unit(i), weight=0.3 * i - 2, ts=1e9 + i * 777.7, event_id=f"e{i}")
    back = PersonState.from_bytes("person/é", s.to_bytes())
    assert_same_state(s, back)
    assert back.to_bytes() == s.to_bytes()
    for target in ("shop", "video"):
        np.testing.assert_array_equal(fused_vector(s, target, 2e9, PARAMS), fused_vector(back, target, 2e9, PARAMS))
    # the copy lives on independently
    feed(back, "shop", "new", E2.repeat(4), event_id="x")
    assert H("new") not in s.consumed and H("new") in back.consumed


history = st.lists(
    st.tuples(
        st.sampled_from(["shop", "video", "music"]),
        st.integers(0, 50),  # item (seeds its vector)
        # weight: what event_weight can give with sane configured weights (|w| >= 1e-6, or a neutral 0);
        # at ~1e-20 a float32 profile's squared norm underflows and its direction is no longer unit
        st.one_of(st.just(0.0), st.floats(1e-6, 3), st.floats(-3, -1e-6)),
        st.floats(0, 1e8, allow_nan=False),  # timestamp (any order)
    ),
    max_size=40,
)


@fuzz
@given(
    events=history,
    target=st.sampled_from(["shop", "video", "music", "books"]),
    later=st.floats(0, 1e8, allow_nan=False),
    half_life_days=st.floats(0.01, 1000, allow_nan=False),
    boost=st.floats(0.5, 10, allow_nan=False),
)
def test_fused_vector_is_unit_or_none(
    events: list[tuple[str, int, float, float]], target: str, later: float, half_life_days: float, boost: float
) -> None:
    params = FusionParams(half_life_s=half_life_days * DAY, same_platform_boost=boost)
    s = PersonState.new("p")
    for platform, item, weight, ts in events:
        feed(s, platform, f"{platform}{item}", unit(item), weight=weight, ts=ts, params=params)
    now = max([ts for *_, ts in events], default=0.0) + later
    fused = fused_vector(s, target, now, params)
    if fused is not None:
        assert fused.dtype == np.float32 and np.isfinite(fused).all()
        assert float(np.linalg.norm(fused)) == pytest.approx(1.0, abs=1e-5)
    for name, (alpha, direction) in platform_mix(s, target, now, params).items():
        assert alpha >= 0 and math.isfinite(alpha)
        # a profile decayed for ~65+ half-lives (then touched by a neutral event) has a float32 norm whose
        # square underflows: its direction is then only roughly unit (harmless: its alpha is ~0)
        if np.linalg.norm(s.profiles[name].vec.astype(np.float64)) > 1e-15:
            # a direction is stored in float16: each component within 2^-11 of the unit vector's, so
            # its length within 2^-11 of 1 (the fused vector above is normalised again: unit to 1e-5)
            assert float(np.linalg.norm(direction)) == pytest.approx(1.0, abs=2.0**-11 + 1e-6)
    assert_same_state(s, PersonState.from_bytes("p", s.to_bytes()))

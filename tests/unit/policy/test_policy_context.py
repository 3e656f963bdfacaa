"""Context features and context-modulated fusion weights; the context validator's reasons."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fusionrec.contracts import REJECT_REASONS
from fusionrec.errors import ValidationError
from fusionrec.policy.context import (
    DEVICES,
    EventContext,
    context_features,
    feature_dim,
    feature_names,
    modulated_weights,
    parse_context,
    zero_matrix,
)

PLATFORMS = ("shop", "video", "news")


@pytest.mark.parametrize(
    "raw, expected",
    [
        (None, None),
        ({}, EventContext()),
        ({"hour": "0", "weekday": "6", "device": "mobile"}, EventContext(0, 6, "mobile")),
        ({"hour": 23, "weekday": 0}, EventContext(hour=23, weekday=0)),
        ({"weekday": "Friday", "device": " TV "}, EventContext(weekday=4, device="tv")),
        ({"weekday": "sun"}, EventContext(weekday=6)),
        ({"device": "fridge", "campaign": "x"}, EventContext(device="fridge")),  # other keys are ignored
    ],
)
def test_parse_valid_contexts(raw: dict[str, Any] | None, expected: EventContext | None) -> None:
    assert parse_context(raw) == expected


@pytest.mark.parametrize(
    "raw, reason, word",
    [
        (["hour", 3], "wrong_type", "object"),
        ("hour=3", "wrong_type", "object"),
        ({"hour": 3.5}, "wrong_type", "hour"),
        ({"hour": True}, "wrong_type", "hour"),
        ({"hour": [1]}, "wrong_type", "hour"),
        ({"hour": "24"}, "bad_value", "hour"),
        ({"hour": -1}, "bad_value", "hour"),
        ({"hour": "noon"}, "bad_value", "hour"),
        ({"hour": "١٢"}, "bad_value", "hour"),  # non-ASCII digits
        ({"weekday": 7}, "bad_value", "weekday"),
        ({"weekday": "funday"}, "bad_value", "weekday"),
        ({"device": 3}, "wrong_type", "device"),
        ({"device": "   "}, "bad_value", "device"),
        ({"device": "x" * 300}, "too_long", "device"),
    ],
)
def test_bad_contexts_are_rejected_with_a_known_reason(raw: Any, reason: str, word: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_context(raw)
    assert info.value.reason == reason and reason in REJECT_REASONS
    assert word in info.value.detail


def test_features_layout() -> None:
    names = feature_names(PLATFORMS)
    assert len(names) == feature_dim(PLATFORMS) == 5 + len(DEVICES) + 1 + 3
    x = context_features(EventContext(hour=6, weekday=0, device="tablet"), "video", PLATFORMS)
    f = dict(zip(names, x.tolist(), strict=True))
    assert f["bias"] == 1.0
    assert f["hour_sin"] == pytest.approx(1.0) and f["hour_cos"] == pytest.approx(0.0, abs=1e-7)
    assert f["weekday_sin"] == 0.0 and f["weekday_cos"] == 1.0
    assert f["device=tablet"] == 1.0 and f["target=video"] == 1.0
    assert sum(x) == pytest.approx(1 + 1 + 1 + 1 + 1)  # bias, sin²+cos² parts, device, target
    other = context_features(EventContext(device="fridge"), "shop", PLATFORMS)
    assert other[names.index("device=other")] == 1.0


def test_missing_context_is_neutral_not_midnight() -> None:
    x = context_features(None, "nowhere", PLATFORMS)
    assert x.tolist() == [1.0] + [0.0] * (feature_dim(PLATFORMS) - 1)
    midnight = context_features(EventContext(hour=0), "nowhere", PLATFORMS)
    assert midnight[2] == 1.0  # cos(0): midnight is information, absence is not


def test_hour_is_cyclic() -> None:
    a = context_features(EventContext(hour=23), "shop", PLATFORMS)[1:3]
    b = context_features(EventContext(hour=0), "shop", PLATFORMS)[1:3]
    c = context_features(EventContext(hour=12), "shop", PLATFORMS)[1:3]
    assert np.linalg.norm(a - b) < np.linalg.norm(a - c)


def test_zero_matrix_keeps_base_weights() -> None:
    base = {"shop": 2.0, "video": 0.5}  # news missing -> 1.0, as in fusion
    x = context_features(EventContext(hour=20, device="tv"), "video", PLATFORMS)
    assert modulated_weights(base, x, zero_matrix(PLATFORMS), PLATFORMS) == pytest.approx(
        {"shop": 2.0, "video": 0.5, "news": 1.0}
    )


def test_matrix_moves_weight_between_platforms_and_keeps_the_sum() -> None:
    names = feature_names(PLATFORMS)
    m = zero_matrix(PLATFORMS)
    m[PLATFORMS.index("video"), names.index("device=tv")] = math.log(4.0)
    x = context_features(EventContext(device="tv"), "shop", PLATFORMS)
    w = modulated_weights({}, x, m, PLATFORMS)
    assert sum(w.values()) == pytest.approx(3.0)
    assert w["video"] == pytest.approx(4 * w["shop"]) and w["shop"] == pytest.approx(w["news"])


@settings(max_examples=80, deadline=None)
@given(
    matrix=arrays(np.float64, (3, feature_dim(PLATFORMS)), elements=st.floats(allow_nan=True, allow_infinity=True)),
    hour=st.none() | st.integers(0, 23),
    device=st.none() | st.sampled_from([*DEVICES, "other-thing"]),
    base=st.lists(st.floats(1e-3, 1e3), min_size=3, max_size=3),
)
def test_weights_are_always_positive_and_finite(
    matrix: np.ndarray, hour: int | None, device: str | None, base: list[float]
) -> None:
    x = context_features(EventContext(hour=hour, device=device), "news", PLATFORMS)
    w = modulated_weights(dict(zip(PLATFORMS, base, strict=True)), x, matrix, PLATFORMS)
    assert all(v > 0 and math.isfinite(v) for v in w.values())
    assert sum(w.values()) == pytest.approx(sum(base))


def test_overflowing_matrix_degrades_to_base_weights() -> None:
    x = context_features(EventContext(hour=3, weekday=1, device="tv"), "shop", PLATFORMS)
    m = np.zeros((3, feature_dim(PLATFORMS)))
    m[0, :] = 1e308  # the dot product overflows to inf
    m[1, :6], m[1, 6:] = 1e308, -1e308  # partial sums may overflow both ways: inf - inf = NaN
    with np.errstate(over="ignore"):
        assert not np.isfinite(m[0] @ x.astype(np.float64))
    w = modulated_weights({}, x, m, PLATFORMS)
    assert all(v > 0 and math.isfinite(v) for v in w.values())
    assert sum(w.values()) == pytest.approx(3.0)


def test_switched_off_platform_stays_off_and_bad_inputs_raise() -> None:
    x = context_features(None, "shop", PLATFORMS)
    m = np.ones((3, feature_dim(PLATFORMS)))
    assert modulated_weights({"news": 0.0}, x, m, PLATFORMS)["news"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        modulated_weights({}, x, np.zeros((2, 3)), PLATFORMS)
    with pytest.raises(ValueError, match="base"):
        modulated_weights({"shop": -1.0}, x, m, PLATFORMS)


# --- the learned gate -------------------------------------------------------------------------------

from fusionrec.policy.context import ContextGate  # noqa: E402


def test_gate_is_neutral_until_published() -> None:
    gate = ContextGate()
    alphas = {"shop": 1.0, "video": 0.5}
    assert gate.gate("shop", None, alphas) == alphas
    gate.learn("shop", None, alphas, {"shop": 0.9, "video": 0.1})
    assert gate.gate("shop", None, alphas) == alphas  # ranking reads the published copy
    gate.publish()
    moved = gate.gate("shop", None, alphas)
    assert moved != alphas and sum(moved.values()) == pytest.approx(sum(alphas.values()))


def test_gate_learns_which_platform_predicts_in_which_context() -> None:
    """On a TV the video profile predicts the chosen items; on a phone the shop profile does."""
    gate = ContextGate(lr=0.2)
    alphas = {"shop": 1.0, "video": 1.0}
    tv, phone = EventContext(device="tv"), EventContext(device="mobile")
    for _ in range(200):
        gate.learn("video", tv, alphas, {"shop": 0.1, "video": 0.8})
        gate.learn("video", phone, alphas, {"shop": 0.8, "video": 0.1})
    gate.publish()
    on_tv, on_phone = gate.gate("video", tv, alphas), gate.gate("video", phone, alphas)
    assert on_tv["video"] > on_tv["shop"] and on_phone["shop"] > on_phone["video"]
    assert gate.gate("shop", tv, alphas) == alphas  # another target platform has its own matrix


def test_gate_state_round_trips_and_skips_one_source() -> None:
    gate = ContextGate()
    gate.learn("video", EventContext(hour=21), {"shop": 1.0, "video": 2.0}, {"shop": 0.2, "video": 0.6})
    gate.learn("video", None, {"video": 2.0}, {"video": 0.6})  # one source: nothing to gate
    tensors, meta = gate.state()
    again = ContextGate()
    again.load(tensors, meta)
    alphas = {"shop": 1.0, "video": 2.0}
    gate.publish()
    assert again.gate("video", EventContext(hour=21), alphas) == gate.gate("video", EventContext(hour=21), alphas)
    assert again.updates == gate.updates == 1


def test_negative_or_single_weights_pass_through() -> None:
    gate = ContextGate()
    gate.learn("shop", None, {"shop": 1.0, "video": 1.0}, {"shop": 1.0, "video": 0.0})
    gate.publish()
    assert gate.gate("shop", None, {"shop": 1.0, "video": -1.0}) == {"shop": 1.0, "video": -1.0}
    assert gate.gate("shop", None, {"shop": 1.0}) == {"shop": 1.0}

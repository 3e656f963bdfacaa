"""Open-loop step figures: unanswered events are infinitely late; pass = p99 ≤ 1 s and ≥ 99.9 % answered."""

from __future__ import annotations

import math

import numpy as np

from stream.bench.latency import certainly_fails, latencies_ms, nearest_rank, step_figures, step_passes


def _step(latencies: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Events scheduled 1 ms apart; NaN latency = never answered."""
    scheduled = 1_000_000.0 + np.arange(len(latencies), dtype=np.float64)
    return scheduled, scheduled + np.array(latencies, dtype=np.float64)


def test_latency_is_receipt_minus_schedule_and_unanswered_is_infinite() -> None:
    scheduled, received = _step([5.0, float("nan"), 20.0])
    lat = latencies_ms(scheduled, received)
    assert lat[0] == 5.0 and lat[2] == 20.0 and math.isinf(lat[1])


def test_nearest_rank_percentiles() -> None:
    values = np.arange(1, 101, dtype=np.float64)  # 1..100
    assert nearest_rank(values, 50) == 50 and nearest_rank(values, 99) == 99 and nearest_rank(values, 100) == 100
    assert nearest_rank(np.array([7.0]), 99) == 7.0
    assert math.isnan(nearest_rank(np.array([]), 50))


def test_all_answered_on_time_passes() -> None:
    fig = step_figures(*_step([100.0] * 1000))
    assert fig.answered == fig.published == 1000 and fig.answered_fraction == 1.0
    assert fig.p50_ms == fig.p99_ms == fig.max_ms == 100.0
    assert step_passes(fig)


def test_unanswered_events_enter_the_percentiles() -> None:
    # 2 % never answered: p99 is infinite even though every answered event was fast
    fig = step_figures(*_step([10.0] * 980 + [float("nan")] * 20))
    assert math.isinf(fig.p99_ms) and fig.p95_ms == 10.0
    assert fig.answered_fraction == 0.98
    assert not step_passes(fig)
    js = fig.as_json()
    assert js["p99_ms"] is None and js["max_ms"] is None and js["p95_ms"] == 10.0  # JSON has no infinity


def test_a_few_unanswered_events_fail_on_the_answered_fraction_alone() -> None:
    # 2 of 1000 lost (99.8 % answered): p99 is fine, the step still fails
    fig = step_figures(*_step([10.0] * 998 + [float("nan")] * 2))
    assert fig.p99_ms == 10.0
    assert not step_passes(fig)
    # 1 of 1000 lost is allowed (99.9 %)
    assert step_passes(step_figures(*_step([10.0] * 999 + [float("nan")])))


def test_slow_tail_fails_on_p99() -> None:
    fig = step_figures(*_step([100.0] * 980 + [1500.0] * 20))
    assert fig.p99_ms == 1500.0 and fig.answered_fraction == 1.0
    assert not step_passes(fig)
    assert step_passes(step_figures(*_step([100.0] * 990 + [1500.0] * 10)))  # exactly 1 % over: p99 still 100


def test_empty_step_never_passes() -> None:
    assert not step_passes(step_figures(np.array([]), np.array([])))


def test_certainly_fails_once_more_than_one_percent_is_known_late() -> None:
    n = 1000
    scheduled = np.arange(n, dtype=np.float64) * 10.0  # 10 s of events at 100/s
    received = np.full(n, np.nan)
    received[:100] = scheduled[:100] + 50.0  # the first second answered quickly
    # at t = 1.5 s: events scheduled before 0.5 s are all answered; nothing known late yet
    assert not certainly_fails(scheduled, received, 1500.0, n)
    # at t = 2.2 s: events 100..119 (scheduled 1.0-1.19 s) unanswered for over 1 s: 20 > 10 allowed
    assert certainly_fails(scheduled, received, 2200.0, n)
    # answers that arrived more than 1 s late count at once, whenever they were scheduled
    received2 = scheduled + 10.0
    received2[:11] = scheduled[:11] + 1200.0
    assert certainly_fails(scheduled, received2, 100.0, n)
    received2[:10] = scheduled[:10] + 10.0
    assert not certainly_fails(scheduled, received2, 100.0, n)

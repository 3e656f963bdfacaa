"""The sustained-rate search: ladder up to the first fail, one bisection, halving when all fail."""

from __future__ import annotations

import math

import pytest

from stream.bench.search import SearchPlan, Tried, next_rate, sustained_index


def _run(plan: SearchPlan, capacity: float) -> list[Tried]:
    """Drive the search against a worker that passes every rate up to ``capacity``."""
    done: list[Tried] = []
    while (nxt := next_rate(plan, done)) is not None:
        rate, kind = nxt
        done.append(Tried(rate, rate <= capacity, kind))
        assert len(done) < 50
    return done


def test_geometric_ladder_then_one_bisection() -> None:
    plan = SearchPlan(start_rate=500, factor=2.0)
    done = _run(plan, capacity=3000)
    assert [t.rate for t in done[:4]] == [500, 1000, 2000, 4000]
    assert [t.kind for t in done] == ["ladder"] * 4 + ["refine"]
    assert done[4].rate == pytest.approx(math.sqrt(2000 * 4000), abs=0.05)  # 2828.4: passes
    best = sustained_index(done)
    assert best == 4 and done[best].rate == pytest.approx(2828.4, abs=0.1)


def test_failed_bisection_keeps_the_last_ladder_pass() -> None:
    done = _run(SearchPlan(start_rate=500, factor=2.0), capacity=2500)
    assert done[-1].kind == "refine" and not done[-1].passed
    assert done[sustained_index(done)].rate == 2000  # type: ignore[index]


def test_first_step_failing_halves_the_rate() -> None:
    done = _run(SearchPlan(start_rate=500, factor=2.0, max_down=3), capacity=150)
    assert [(t.rate, t.kind) for t in done[:3]] == [(500, "ladder"), (250, "down"), (125, "down")]
    assert done[3].kind == "refine" and not done[3].passed  # 177/s, between 125 and 250
    assert done[sustained_index(done)].rate == 125  # type: ignore[index]


def test_nothing_passes() -> None:
    done = _run(SearchPlan(start_rate=500, max_down=2), capacity=1)
    assert len(done) == 3 and sustained_index(done) is None


def test_explicit_rates_in_ascending_order_until_a_fail() -> None:
    plan = SearchPlan(rates=(400, 100, 200, 800), refinements=0)
    done = _run(plan, capacity=300)
    assert [t.rate for t in done] == [100, 200, 400]  # 800 never tried after the fail at 400
    assert done[sustained_index(done)].rate == 200  # type: ignore[index]


def test_ladder_stops_at_max_rate() -> None:
    done = _run(SearchPlan(start_rate=1000, factor=2.0, max_rate=4000), capacity=1e9)
    assert [t.rate for t in done] == [1000, 2000, 4000] and all(t.passed for t in done)


def test_sustained_rate_ignores_a_pass_above_a_fail() -> None:
    done = [Tried(100, True), Tried(200, False), Tried(300, True)]  # not what the search does, but possible input
    assert sustained_index(done) == 0


def test_no_refinement_closer_than_min_gap() -> None:
    done = [Tried(1000, True), Tried(1050, False)]
    assert next_rate(SearchPlan(min_gap=0.05), done) is None

"""The bench's pure helpers: phase figures, metric parsing, profile aggregation, the console summary.

No timing is asserted here: benchmarks are commands (``fusionrec bench``), not tests.
"""

from __future__ import annotations

import math
from pathlib import Path

from stream.bench.e2e import aggregate_profile, metric_value, phase_figures
from stream.bench.report import summarise


def _rows(n: int, *, step_ms: float = 1.0, latency_ms: float = 20.0) -> list[tuple[float, float, float]]:
    """``n`` recommendations produced ``step_ms`` apart, each ``latency_ms`` after its event."""
    return [(1000.0 + i * step_ms + latency_ms, 1000.0 + i * step_ms, 1000.0 + i * step_ms + latency_ms + 1) for i in range(n)]


def test_complete_phase_has_a_steady_rate_and_percentiles() -> None:
    fig = phase_figures(_rows(2000), 2000)
    assert fig["complete"] and fig["received_fraction"] == 1.0
    assert math.isclose(fig["recs_per_s_steady"], 1000.0, rel_tol=0.01)
    assert fig["p50_ms"] == fig["p99_ms"] == 20.0


def test_incomplete_phase_reports_no_steady_rate() -> None:
    fig = phase_figures(_rows(76), 3000)  # a handful of recommendations from one batch
    assert not fig["complete"]
    assert math.isnan(fig["recs_per_s_steady"])
    assert fig["received_fraction"] < 0.03


def test_empty_phase() -> None:
    assert phase_figures([], 10) == {"received": 0, "published": 10, "complete": False}


def test_metric_value_sums_label_sets_and_ignores_other_metrics() -> None:
    text = (
        "# TYPE fusionrec_recommendations_total counter\n"
        'fusionrec_recommendations_total{platform="a"} 3.0\n'
        'fusionrec_recommendations_total{platform="b"} 4.0\n'
        'fusionrec_recommendations_created{platform="a"} 1.7e9\n'
        "fusionrec_recommendations_total_other 100\n"
    )
    assert metric_value(text, "fusionrec_recommendations_total") == 7.0
    assert metric_value("", "fusionrec_recommendations_total") is None


def test_aggregate_profile(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text("main (a/app.py:1);rank (x/learning.py:9) 3\nmain (a/app.py:1);search (y/index.py:4) 1\n")
    prof = aggregate_profile(raw)
    assert prof["samples"] == 4
    assert prof["self_pct"][0] == ("rank (x/learning.py)", 75.0)
    assert ("main (a/app.py)", 100.0) in prof["inclusive_pct"]
    assert "error" in aggregate_profile(tmp_path / "missing.txt")


def test_summarise_every_section() -> None:
    figures = {
        "core": {"events_per_s": 1.0, "events": 1, "recommendations": 1},
        "memory": {"bytes_per_person": 1.0, "peak_rss_mb": 1.0},
        "encoder": {"items_per_s": 2.0, "sentence_transformers_items_per_s": 1.0, "ratio_vs_sentence_transformers": 2.0},
        "index": {"queries_per_s": 1.0, "overhead_vs_faiss": 0.05, "headline": "h"},
        "e2e": {"events_per_s": 1.0, "offered_per_s": 1.0, "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0},
    }
    for name, fig in figures.items():
        assert summarise(name, fig)

"""The bench's pure helpers: run and headline figures, metric parsing, profile aggregation, the summary.

No timing is asserted here: benchmarks are commands (``fusionrec bench``), not tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream.bench.e2e import E2EPlan, headline, run_summary
from stream.bench.latency import step_figures
from stream.bench.profile import aggregate_profile
from stream.bench.report import summarise
from stream.bench.step import StepOutcome
from stream.bench.workers import metric_value


def _outcome(rate: float, latency_ms: float, *, n: int = 1000, lost: int = 0, worker_cpu_s: float = 1.0, aborted: bool = False) -> StepOutcome:
    scheduled = np.arange(n, dtype=np.float64) * 1000.0 / rate
    received = scheduled + latency_ms
    received[n - lost :] = np.nan
    return StepOutcome(
        tag=f"t-r{rate:.0f}", asked_rate=rate, latency=step_figures(scheduled, received),
        publisher={"achieved_rate": rate * 0.999, "cpu_send_s": 0.1},
        cpu_s={"worker0": worker_cpu_s, "broker": 0.5, "collector": 0.1, "publisher": 0.1},
        cpu_share={"worker0": 0.5, "broker": 0.2, "publisher": 0.05, "collector": 0.05, "machine": 0.9, "other": 0.1},
        window_s=n / rate, aborted=aborted, drained=True, drain_s=0.1, repeats=0, loadavg_1m=1.0,
        start_ms=0.0, last_receipt_ms=float(np.nanmax(received)) if n > lost else None,
    )  # fmt: skip


def _summary() -> dict:
    steps = [_outcome(500, 100), _outcome(707, 300), _outcome(1000, 2000, aborted=True), _outcome(841, 500, lost=5)]
    return run_summary(steps, ["ladder", "ladder", "ladder", "refine"], [[1000.0]] * 4, 1)


def test_run_summary_picks_the_highest_pass() -> None:
    s = _summary()
    assert s["sustained_step"] == 1 and s["sustained_events_per_s"] == 707
    assert s["p99_ms_at_sustained"] == 300.0 and s["answered_fraction_at_sustained"] == 1.0
    assert s["worker_cpu_us_per_event"] == 1000.0  # 1 s of worker CPU over 1000 answered events
    assert s["first_failing_rate"] == 841  # the refinement failed (0.5 % lost), the lowest fail above 707
    assert [r["passed"] for r in s["steps"]] == [True, True, False, False]
    assert s["steps"][2]["aborted"] and s["steps"][3]["answered_fraction"] == 0.995


def test_run_summary_when_nothing_passes() -> None:
    s = run_summary([_outcome(100, 5000)], ["ladder"], [[None]], 1)
    assert s["sustained_events_per_s"] == 0.0 and s["p99_ms_at_sustained"] is None and s["first_failing_rate"] == 100
    assert s["steps"][0]["worker_cpu_us_per_event_by_worker"] == [None]  # /metrics did not answer


def test_headline_keys_by_catalog_and_by_workers() -> None:
    run8k = {**_summary(), "workers": 1, "catalog_items": 8000, "distinct_people_per_batch": 480.0}
    run100k = {**_summary(), "workers": 1, "catalog_items": 100000, "distinct_people_per_batch": 490.0}
    two = {**_summary(), "workers": 2, "catalog_items": 8000, "distinct_people_per_batch": 480.0}
    h = headline({"w1-c8000": run8k, "w2-c8000": two, "w1-c100000": run100k}, E2EPlan())
    for key in ("sustained_events_per_s", "p99_ms_at_sustained", "worker_cpu_us_per_event", "catalog_items", "distinct_people_per_batch"):
        assert key in h and key in h["by_catalog"]["8000"] and key in h["by_catalog"]["100000"]
    assert h["catalog_items"] == 8000 and h["sustained_events_per_s"] == 707
    assert set(h["by_workers"]) == {"1", "2"} and h["by_workers"]["2"]["run"] == "w2-c8000"
    assert h["events_per_s"] == 707 and h["p99_ms"] == 300.0  # the earlier keys, now at the sustained step
    assert h["events_per_s_by_workers"] == {"workers_1": 707, "workers_2": 707}


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
    run = {**_summary(), "workers": 1, "catalog_items": 8000}
    figures = {
        "core": {"events_per_s": 1.0, "events": 1, "recommendations": 1},
        "memory": {"bytes_per_person": 1.0, "peak_rss_mb": 1.0},
        "encoder": {"items_per_s": 2.0, "sentence_transformers_items_per_s": 1.0, "ratio_vs_sentence_transformers": 2.0},
        "index": {"queries_per_s": 1.0, "overhead_vs_faiss": 0.05, "ivf_queries_per_s": 3.0, "ivf_recall_at_10": 0.9, "headline": "h"},
        "e2e": headline({"w1-c8000": run, "w2-c8000": {**run, "workers": 2}}, E2EPlan()),
    }
    for name, fig in figures.items():
        assert summarise(name, fig)
    assert "IVF 3 queries/s, recall@10 0.900" in summarise("index", figures["index"])
    gpu = {**figures["index"], "ivf_queries_per_s": None, "ivf_recall_at_10": None}  # on a GPU: exact only
    assert "IVF" not in summarise("index", gpu)
    assert "sustained 707 events/s" in summarise("e2e", figures["e2e"]) and "2 workers" in summarise("e2e", figures["e2e"])
    nothing = headline({"w1-c8000": {**run_summary([_outcome(100, 5000)], ["ladder"], [[None]], 1), "workers": 1, "catalog_items": 8000}}, E2EPlan())
    assert "no offered rate passed" in summarise("e2e", nothing)

"""The end-to-end bench runs for real: its own broker, a worker process, the publisher, the collector.

Only what the harness produces is checked (every step published and accounted for, the JSON keys);
never a timing: how fast the worker is on the test machine is not a test result.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.bench.e2e import bench_e2e
from stream.bench.report import BenchOptions, summarise


def test_quick_sustained_rate_search_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONREC_BENCH_DATA", str(tmp_path / "bench-data"))  # the synthetic set goes here
    monkeypatch.setenv("FUSIONREC_VECTOR_CACHE_DIR", str(tmp_path / "vectors"))  # the worker's, via its env
    options = BenchOptions(
        quick=True, device="cpu", e2e_catalogs=(300,), e2e_workers=(1,), e2e_people=1000, e2e_events=5000,
        e2e_rates=(20.0, 40.0), e2e_step_s=3.0, e2e_warmup_events=100,
        extra={"e2e_given": {"catalogs", "people", "events", "step_s", "warmup_events", "rates"}},
    )  # fmt: skip
    lines: list[str] = []
    e2e = bench_e2e(options, log=lines.append)

    run = e2e["runs"]["w1-c300"]
    assert run["catalog_items"] == 300 and run["workers"] == 1 and run["identity_links"] > 1000
    assert run["warmup"]["published"] == 100 and run["warmup"]["answered"] == 100  # drained before any step
    assert run["steps"] and run["steps"][0]["asked_rate"] == 20.0
    for step in run["steps"]:
        assert step["published"] > 0 and 0.0 <= step["answered_fraction"] <= 1.0
        assert step["cpu_s"]["worker0"] > 0 and "broker" in step["cpu_share"] and "publisher" in step["cpu_share"]
        assert step["publisher"]["delivery_errors"] == 0
    assert run["distinct_people_per_batch"] > 0
    for key in ("sustained_events_per_s", "p99_ms_at_sustained", "worker_cpu_us_per_event", "catalog_items", "distinct_people_per_batch"):
        assert key in e2e and key in e2e["by_catalog"]["300"]
    assert summarise("e2e", e2e)


def test_echo_worker_answers_every_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's ceiling instrument: every published event of every step comes back answered."""
    monkeypatch.setenv("FUSIONREC_BENCH_DATA", str(tmp_path / "bench-data"))
    options = BenchOptions(
        quick=True, e2e_catalogs=(300,), e2e_workers=(2,), e2e_people=1000, e2e_events=5000, e2e_worker="echo",
        e2e_rates=(200.0, 400.0), e2e_step_s=2.0, e2e_warmup_events=500, e2e_refinements=0,
        extra={"e2e_given": {"catalogs", "people", "events", "step_s", "warmup_events", "rates"}},
    )  # fmt: skip
    run = bench_e2e(options, log=lambda line: None)["runs"]["w2-c300"]
    assert run["worker"] == "echo" and run["workers"] == 2
    assert run["warmup"]["answered"] == 500
    for step in run["steps"]:
        assert step["published"] > 0 and step["answered"] == step["published"] and step["repeats"] == 0
        assert set(step["cpu_s"]) >= {"worker0", "worker1", "broker", "collector", "publisher"}

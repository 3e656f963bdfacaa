"""The dashboard's readings and series (what the page draws), and its static files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream.dashboard import History, Reading, quantile, static_file
from stream.lag import LagRow
from stream.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]


def reading(m: Metrics, t: float) -> Reading:
    return Reading.parse([m.render().decode()], t=t)


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = {10.0: 50.0, 100.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == 10.0
    assert quantile(0.75, buckets) == pytest.approx(55.0)
    assert quantile(0.99, {10.0: 0.0, float("inf"): 5.0}) == 10.0  # in +Inf: the highest finite bound
    assert quantile(0.99, {10.0: 0.0, float("inf"): 0.0}) is None


def test_series_from_two_workers_over_time() -> None:
    a, b = Metrics(), Metrics()
    history = History(keep_s=60, latency_window_s=10)
    for m in (a, b):
        m.set_model_version("v1")
        m.index_items.set(24)
    a.set_lag([LagRow("g", "x.events.shop", 0, 10, 4, 6)])
    b.set_lag([LagRow("g", "x.events.shop", 0, 10, 6, 4)])  # an older reading of the same partition
    history.add(Reading.parse([a.render().decode(), b.render().decode()], t=1000.0))
    for _ in range(20):
        a.events_total.labels("shop").inc()
        b.events_total.labels("video").inc(2)
        a.latency_ms.observe(40)
        b.latency_ms.observe(400)
    a.dead_letters_total.labels("duplicate", "x.events.shop").inc(4)
    history.add(Reading.parse([a.render().decode(), b.render().decode()], t=1002.0))
    s = history.series()
    assert s["t"] == [1000.0, 1002.0]
    assert s["lag"] == {"x.events.shop[0]": [6.0, 6.0]}  # max over reporters
    assert s["events_per_s"] == {"shop": [None, 10.0], "video": [None, 20.0]}
    assert s["dead_letters_per_s"] == {"duplicate": [None, 2.0]}
    p50, p99 = s["latency_ms"]["p50"][1], s["latency_ms"]["p99"][1]
    assert 25 <= p50 <= 50 and 250 <= p99 <= 500
    assert s["latest"]["model_versions"] == ["v1"] and s["latest"]["index_items"] == 24
    assert s["latest"]["workers"] == 2 and s["latest"]["dead_letters_total"] == {"duplicate": 4.0}
    assert s["latest"]["checkpoint_age_s"] is None and s["latest"]["online_recall_at_10"] is None


def test_history_keeps_only_the_last_minutes() -> None:
    history = History(keep_s=10)
    for t in range(30):
        history.add(Reading(t=float(t)))
    assert [r.t for r in history.readings][0] == 19.0


def test_the_page_is_self_contained() -> None:
    html = static_file("dashboard.html").decode()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith("/dashboard/"), f"the page must not load {ref} from elsewhere"
    for name in ("chart-lag", "chart-latency", "chart-throughput", "chart-dlq", "tile-model"):
        assert f'id="{name}"' in html
    js = static_file("dashboard.js").decode()
    assert "http://" not in js and "https://" not in js and "/api/dashboard" in js
    assert static_file("dashboard.css")


def test_the_static_files_are_package_data() -> None:
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["stream.web"]
    for f in (REPO / "stream" / "web").iterdir():
        if f.suffix != ".py" and f.is_file():
            assert any(f.match(p) for p in data), f.name

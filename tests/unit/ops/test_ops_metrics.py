"""The metrics module: names and units, online Recall@10, the core's hooks as timing metrics."""

from __future__ import annotations

import math
import re
from pathlib import Path
from prometheus_client.parser import text_string_to_metric_families

from fakes import DictStates, build_core, catalog
from fusionrec.contracts import BehaviorEvent, ItemDelete, ItemUpsert
from stream.dashboard import install_ops
from stream.lag import LagRow
from hypothesis import given
from hypothesis import strategies as st

from stream.metrics import MS_BUCKETS, Metrics, MetricsHooks, OnlineRecall, observe_many


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(m.render().decode())
        for s in f.samples
    }


def test_names_carry_units_and_two_apps_never_collide() -> None:
    a, b = Metrics(), Metrics()  # separate registries
    a.events_total.labels("shop").inc()
    assert ("fusionrec_events_total", (("platform", "shop"),)) in samples(a)
    assert ("fusionrec_events_total", (("platform", "shop"),)) not in samples(b)
    for name in a.exported_names():
        assert name.startswith("fusionrec_")
        assert re.search(r"_(total|created|ms|messages|items|events|seconds|info|at_10|bucket|count|sum)$", name), name


def test_lag_gauge_is_replaced_by_each_reading() -> None:
    m = Metrics()
    m.set_lag([LagRow("g", "t", 0, 10, 7, 3), LagRow("g", "t", 1, 4, 4, 0)])
    m.set_lag([LagRow("g", "t", 1, 6, 4, 2)])
    got = {k: v for k, v in samples(m).items() if k[0] == "fusionrec_consumer_lag_messages"}
    assert got == {("fusionrec_consumer_lag_messages", (("group", "g"), ("partition", "1"), ("topic", "t"))): 2.0}


def test_model_version_has_exactly_one_series() -> None:
    m = Metrics()
    m.set_model_version("v1")
    m.set_model_version("v2")
    got = {k: v for k, v in samples(m).items() if k[0] == "fusionrec_model_info"}
    assert got == {("fusionrec_model_info", (("model_version", "v2"),)): 1.0}


def test_checkpoint_age_is_nan_until_a_checkpoint_then_grows() -> None:
    m = Metrics()
    assert math.isnan(samples(m)[("fusionrec_checkpoint_age_seconds", ())])
    import time

    m.checkpointed(time.time() - 30)
    assert 29 <= samples(m)[("fusionrec_checkpoint_age_seconds", ())] < 60


def test_online_recall_is_test_then_train_per_person_and_platform() -> None:
    m = Metrics()
    r = OnlineRecall(m, max_people=2, window=4)
    assert math.isnan(samples(m)[("fusionrec_online_recall_at_10", ())])
    assert r.observe("p", "shop", "a", ["x", "y"]) is None  # no previous list: not scored
    assert r.observe("p", "video", "x", ["z"]) is None  # another platform has its own list
    assert r.observe("p", "shop", "y", ["q"]) is True  # y was in p's previous shop list
    assert r.observe("p", "shop", "y", ["w"]) is False
    assert samples(m)[("fusionrec_online_recall_at_10", ())] == 0.5
    assert samples(m)[("fusionrec_online_recall_hits_total", ())] == 1
    assert samples(m)[("fusionrec_online_recall_trials_total", ())] == 2
    ids = [f"i{n}" for n in range(12)]
    r.observe("q", "shop", "a", ids)
    assert r.observe("q", "shop", "i11", []) is False  # only the top 10 count
    r.observe("s", "shop", "a", ["b"])  # a third pair evicts the least recently active
    assert list(r._last) == [("q", "shop"), ("s", "shop")]


def test_the_least_recently_active_pair_is_forgotten_first() -> None:
    r = OnlineRecall(Metrics(), max_people=2)
    r.observe("a", "shop", "x", ["y"])
    r.observe("b", "shop", "x", ["y"])
    assert r.observe("a", "shop", "y", ["z"]) is True  # a is active again: b is now the oldest
    r.observe("c", "shop", "x", ["y"])
    assert list(r._last) == [("a", "shop"), ("c", "shop")]
    assert r.observe("b", "shop", "y", []) is None  # b's list was forgotten


def test_the_window_forgets_old_events() -> None:
    m = Metrics()
    r = OnlineRecall(m, window=2)
    r.observe("p", "s", "a", ["b"])
    for item, expect in (("b", 1.0), ("x", 0.5), ("y", 0.0)):
        r.observe("p", "s", item, ["b"] if item == "b" else [])
        assert samples(m)[("fusionrec_online_recall_at_10", ())] == expect


def test_observe_many_is_observe_one_by_one_with_the_counters_updated_once() -> None:
    # scored: 2 (a hit), 6 (a miss); 5 and 7 are not: their pairs were evicted (two people kept)
    answers = [("p", "shop", "a", ["x", "y"]), ("p", "shop", "y", ["q"]), ("p", "video", "x", ["z"]), ("q", "shop", "b", ["b"]),
               ("p", "shop", "q", ["w"]), ("q", "shop", "c", []), ("p", "video", "z", [f"i{n}" for n in range(12)])]  # fmt: skip
    one, many = Metrics(), Metrics()
    r1, r2 = OnlineRecall(one, max_people=2, window=3), OnlineRecall(many, max_people=2, window=3)
    for a in answers:
        r1.observe(*a)
    r2.observe_many(iter(answers))  # any iterable, read once
    names = ("fusionrec_online_recall_hits_total", "fusionrec_online_recall_trials_total", "fusionrec_online_recall_at_10")
    assert [samples(many)[(n, ())] for n in names] == [samples(one)[(n, ())] for n in names] == [1.0, 2.0, 0.5]
    assert r2._last == r1._last
    counted: list[float] = []
    m = Metrics()
    m.recall_trials.inc = counted.append  # type: ignore[method-assign]
    OnlineRecall(m, max_people=2, window=3).observe_many(answers)
    assert counted == [2]  # one increment for the batch
    OnlineRecall(Metrics()).observe_many([])  # nothing scored: nothing to set


@given(st.lists(st.one_of(st.integers(-5, 20_000), st.sampled_from([float(b) for b in MS_BUCKETS]), st.floats(0, 1e5)), max_size=60))
def test_a_batch_of_latencies_is_exposed_as_one_observe_per_value(values: list[float]) -> None:
    one_by_one, batched = Metrics(), Metrics()
    for v in values:
        one_by_one.latency_ms.observe(v)
    observe_many(batched.latency_ms, values)
    latency = lambda m: {k: v for k, v in samples(m).items() if k[0].startswith("fusionrec_event_to_recommendation_ms")}  # noqa: E731
    want, got = latency(one_by_one), latency(batched)
    assert got.keys() == want.keys() and len(want) == len(MS_BUCKETS) + 4  # buckets, +Inf, count, sum, created
    for key, value in want.items():  # the bounds themselves included (a bucket is "<= le")
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9), key


def test_metrics_hooks_time_the_cores_encoder_index_and_ranking() -> None:
    """The core reports through ``CoreHooks``; ``MetricsHooks`` turns them into the timing metrics."""
    m = Metrics()
    rec = build_core(("shop", "video"), hooks=MetricsHooks(m))  # the catalog: one encoder batch, one upsert
    s = samples(m)
    assert s[("fusionrec_encoder_batch_ms_count", ())] == 1
    assert s[("fusionrec_encoder_texts_total", ())] == len(catalog(("shop", "video")))
    assert s[("fusionrec_index_op_ms_count", (("op", "upsert"),))] == 1
    assert ("fusionrec_index_op_ms_count", (("op", "search"),)) not in s
    assert s[("fusionrec_rank_batch_ms_count", ())] == 0
    states = DictStates()
    batches = [
        [BehaviorEvent(f"e{b}-{k}", 1.6e9 + 10 * b + k, p, f"u{k}", f"{p[0]}{k}", "click") for k in range(4) for p in ("shop", "video")]
        for b in range(3)
    ]
    for batch in batches:
        outcomes, _ = rec.process(batch, states)
        assert len(outcomes) == len(batch)
    rec.process(batches[0][:1], states, rank=False)  # learning only: nothing ranked, nothing searched
    s = samples(m)
    assert s[("fusionrec_rank_batch_ms_count", ())] == 3  # once per batch, not per request or platform
    assert s[("fusionrec_index_op_ms_count", (("op", "search"),))] == 3 * 2  # once per platform of a batch
    assert s[("fusionrec_rank_batch_ms_sum", ())] > 0 and s[("fusionrec_index_op_ms_sum", (("op", "search"),))] > 0
    rec.apply_items([ItemUpsert("s-new", "shop", "a new thing"), ItemDelete("s0", "shop")])
    s = samples(m)
    assert s[("fusionrec_encoder_batch_ms_count", ())] == 2 and s[("fusionrec_encoder_texts_total", ())] == len(catalog(("shop", "video"))) + 1
    assert s[("fusionrec_index_op_ms_count", (("op", "upsert"),))] == 2
    assert s[("fusionrec_index_op_ms_count", (("op", "delete"),))] == 1  # timed on its own, not inside the upsert


def test_a_written_checkpoint_restarts_the_checkpoint_age(tmp_path: Path) -> None:
    m = Metrics()
    rec = build_core(("shop",), hooks=MetricsHooks(m))
    assert math.isnan(samples(m)[("fusionrec_checkpoint_age_seconds", ())])
    rec.save_checkpoint(str(tmp_path / "ckpt"))
    assert 0 <= samples(m)[("fusionrec_checkpoint_age_seconds", ())] < 5
    assert (tmp_path / "ckpt" / "manifest.json").exists()


class StubApp:
    """What ``install_ops`` uses of a faust app: timers and pages (recorded, never run)."""

    def __init__(self) -> None:
        self.timers: list[str] = []
        self.pages: list[str] = []

    def timer(self, interval: float, name: str):  # type: ignore[no-untyped-def]
        self.timers.append(name)
        return lambda fn: fn

    def page(self, path: str):  # type: ignore[no-untyped-def]
        self.pages.append(path)
        return lambda fn: fn


def test_the_ops_side_exports_the_model_version_and_the_checkpointers_age() -> None:
    m = Metrics()
    rec = build_core(("shop",), hooks=MetricsHooks(m), model_version="fusion-v2-test")
    app = StubApp()

    class Checkpointer:
        def age_s(self) -> float:
            return 7.0

    app.fusionrec_checkpointer = Checkpointer()  # type: ignore[attr-defined]
    recall = install_ops(app, rec.cfg, m, rec)
    assert isinstance(recall, OnlineRecall) and recall.metrics is m
    s = samples(m)
    assert {k: v for k, v in s.items() if k[0] == "fusionrec_model_info"} == {("fusionrec_model_info", (("model_version", "fusion-v2-test"),)): 1.0}
    assert s[("fusionrec_checkpoint_age_seconds", ())] == 7.0
    assert "/dashboard" in app.pages and app.timers == ["fusionrec.ops_tick"]


def test_checkpoint_age_can_come_from_the_checkpointer() -> None:
    m = Metrics()
    ages: list[float | None] = [None]
    m.checkpoint_age_from(lambda: ages[0])
    assert math.isnan(samples(m)[("fusionrec_checkpoint_age_seconds", ())])
    ages[0] = 12.5
    assert samples(m)[("fusionrec_checkpoint_age_seconds", ())] == 12.5

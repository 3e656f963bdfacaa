"""The metrics module: names and units, online Recall@10, encoder/index timing proxies."""

from __future__ import annotations

import math
import re

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from stream.lag import LagRow
from stream.metrics import Metrics, OnlineRecall, instrument


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
    assert len(r._last) == 2


def test_the_window_forgets_old_events() -> None:
    m = Metrics()
    r = OnlineRecall(m, window=2)
    r.observe("p", "s", "a", ["b"])
    for item, expect in (("b", 1.0), ("x", 0.5), ("y", 0.0)):
        r.observe("p", "s", item, ["b"] if item == "b" else [])
        assert samples(m)[("fusionrec_online_recall_at_10", ())] == expect


class FakeEncoder:
    dim = 2
    model_id = "fake"

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        return np.ones((len(texts), 2), np.float32)


class FakeIndex:
    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: object) -> bool:
        return item in self.items

    def upsert(self, ids: list[str], platforms: list[str], vectors: np.ndarray) -> None:
        self.items.update(zip(ids, platforms))

    def search(self, queries: np.ndarray, k: int, **kw: object) -> list[list[tuple[str, float]]]:
        return [[(i, 1.0) for i in list(self.items)[:k]] for _ in queries]

    def platform_of(self, item: str) -> str | None:
        return self.items.get(item)


class FakeRecommender:
    model_version = "fusion-v1-test"

    def __init__(self) -> None:
        self.encoder = FakeEncoder()
        self.index = FakeIndex()

    def rank_requests(self, requests: list[str], k: int | None = None) -> list[list[tuple[str, float]]]:
        return [[] for _ in requests]


def test_instrument_times_the_encoder_and_index_and_exports_the_model_version() -> None:
    m, rec = Metrics(), FakeRecommender()
    instrument(rec, m)
    instrument(rec, m)  # idempotent: no double wrapping
    vecs = rec.encoder.encode(["a", "b", "c"])
    rec.index.upsert(["x", "y"], ["shop", "shop"], vecs[:2])
    assert rec.index.search(vecs[:1], 1) == [[("x", 1.0)]]
    assert len(rec.index) == 2 and "x" in rec.index and rec.index.platform_of("y") == "shop"
    assert rec.encoder.dim == 2 and rec.encoder.model_id == "fake"
    s = samples(m)
    assert s[("fusionrec_encoder_batch_ms_count", ())] == 1
    assert s[("fusionrec_encoder_texts_total", ())] == 3
    assert s[("fusionrec_index_op_ms_count", (("op", "upsert"),))] == 1
    assert s[("fusionrec_index_op_ms_count", (("op", "search"),))] == 1
    assert s[("fusionrec_model_info", (("model_version", "fusion-v1-test"),))] == 1
    assert rec.rank_requests(["a", "b"]) == [[], []]
    assert samples(m)[("fusionrec_rank_batch_ms_count", ())] == 1


def test_a_successful_checkpoint_restarts_the_checkpoint_age() -> None:
    calls = []

    class WithCheckpoints(FakeRecommender):
        def save_checkpoint(self, directory: str) -> None:
            calls.append(directory)

    m, rec = Metrics(), WithCheckpoints()
    instrument(rec, m)
    instrument(rec, m)
    assert math.isnan(samples(m)[("fusionrec_checkpoint_age_seconds", ())])
    rec.save_checkpoint("/tmp/x")
    assert calls == ["/tmp/x"]
    assert 0 <= samples(m)[("fusionrec_checkpoint_age_seconds", ())] < 5


def test_checkpoint_age_can_come_from_the_checkpointer() -> None:
    m = Metrics()
    ages: list[float | None] = [None]
    m.checkpoint_age_from(lambda: ages[0])
    assert math.isnan(samples(m)[("fusionrec_checkpoint_age_seconds", ())])
    ages[0] = 12.5
    assert samples(m)[("fusionrec_checkpoint_age_seconds", ())] == 12.5


def test_the_learners_rank_is_timed_when_there_is_a_learner() -> None:
    class Learner:
        def rank(self, requests: list[str], k: int) -> list[list[tuple[str, float]]]:
            return [[] for _ in requests]

    class WithLearner(FakeRecommender):
        def __init__(self) -> None:
            super().__init__()
            self.learner = Learner()

    m, rec = Metrics(), WithLearner()
    instrument(rec, m)
    instrument(rec, m)
    assert rec.learner.rank(["a"], 10) == [[]]
    assert rec.rank_requests(["a"]) == [[]]  # not wrapped: the learner's rank is timed once per batch
    assert samples(m)[("fusionrec_rank_batch_ms_count", ())] == 1

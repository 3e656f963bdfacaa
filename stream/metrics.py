"""Prometheus metrics of a worker: one module, units in the names, ms-scale latency buckets.

A ``Metrics`` object owns its own registry, so several apps (tests) never collide.  Besides the
metrics themselves this module holds the cheap helpers that feed them: timing proxies around the
encoder, the index and the ranking as the core's hooks (``MetricsHooks``) and the online Recall@10 of
test-then-train (``OnlineRecall``).

Every name the workers export (``exported_names``) is what dashboards may query; the tests check the
Grafana dashboard against it.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 75, 100, 150, 250, 500, 750, 1000, 1500, 2500, 5000, 10000)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, one increment per bucket hit instead of per value: the
    worker observes every event's latency, and ``observe`` (a lock and a scan of the bounds each) cost
    more than the rest of its bookkeeping.  prometheus_client's histogram internals, pinned by a test
    that compares the exposition with one ``observe`` per value."""
    if not values:
        return
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds  # ascending, +Inf last: the first bound >= v is observe's bucket
    for i, n in Tally(bisect_left(bounds, v) for v in values).items():
        histogram._buckets[i].inc(n)
    histogram._sum.inc(sum(values))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_total = Counter(
            "fusionrec_events_total", "Behaviour events consumed, by platform.", ["platform"], registry=r
        )
        self.recommendations_total = Counter(
            "fusionrec_recommendations_total", "Recommendation messages published.", ["platform"], registry=r
        )
        self.variant_recommendations_total = Counter(
            "fusionrec_variant_recommendations_total",
            "Recommendation messages published, by A/B variant (\"none\" without an experiment).",
            ["variant"],
            registry=r,
        )
        self.explored_items_total = Counter(
            "fusionrec_explored_items_total",
            "Recommended items chosen by the exploration policy rather than by score, by A/B variant.",
            ["variant"],
            registry=r,
        )
        self.dead_letters_total = Counter(
            "fusionrec_dead_letters_total", "Messages sent to the dead-letter topic, by reason.", ["reason", "topic"], registry=r
        )
        self.latency_ms = Histogram(
            "fusionrec_event_to_recommendation_ms",
            "Event produce timestamp to recommendation publish, milliseconds.",
            buckets=MS_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fusionrec_batch_size_events", "Events per micro-batch.", ["stage"], buckets=SIZE_BUCKETS, registry=r
        )
        self.index_items = Gauge("fusionrec_index_items", "Items in the index.", registry=r)
        self.loop_seconds = Counter(
            "fusionrec_worker_loop_seconds_total",
            "Time of the worker's hot loop: waiting for records (wait) or processing them (process).",
            ["phase"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "fusionrec_consumer_lag_messages",
            "Log end offset minus the group's committed offset, read from the broker.",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.lag_read_errors = Counter(
            "fusionrec_consumer_lag_read_errors_total", "Failed readings of the consumer lag.", registry=r
        )
        self.encoder_batch_ms = Histogram(
            "fusionrec_encoder_batch_ms", "Time to encode one batch of item texts, milliseconds.", buckets=MS_BUCKETS, registry=r
        )
        self.encoder_texts = Counter("fusionrec_encoder_texts_total", "Item texts encoded.", registry=r)
        self.index_op_ms = Histogram(
            "fusionrec_index_op_ms",
            "Time of one item-store call (search: a platform's candidate search for a batch; upsert; delete), milliseconds.",
            ["op"],
            buckets=MS_BUCKETS,
            registry=r,
        )
        self.rank_batch_ms = Histogram(
            "fusionrec_rank_batch_ms",
            "Time to rank one micro-batch of requests (top-K retrieval and scoring), milliseconds.",
            buckets=MS_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "fusionrec_model_info", "The model version serving recommendations (value 1).", ["model_version"], registry=r
        )
        self.model_version: str | None = None
        self._last_checkpoint: float | None = None
        self._checkpoint_age_source: Callable[[], float | None] | None = None
        self.checkpoint_age = Gauge(
            "fusionrec_checkpoint_age_seconds",
            "Seconds since the last continual-learning checkpoint (NaN until there is one).",
            registry=r,
        )
        self.checkpoint_age.set_function(self._checkpoint_age)
        self.recall_hits = Counter(
            "fusionrec_online_recall_hits_total",
            "Events whose item was in the person's previous top-10 on that platform (test-then-train).",
            registry=r,
        )
        self.recall_trials = Counter(
            "fusionrec_online_recall_trials_total",
            "Events scored by the online Recall@10 (the person had a previous recommendation on that platform).",
            registry=r,
        )
        self.online_recall = Gauge(
            "fusionrec_online_recall_at_10",
            "Online Recall@10 over the last scored events (test-then-train; NaN before the first).",
            registry=r,
        )
        self.online_recall.set(math.nan)

    def set_model_version(self, version: str) -> None:
        """Exactly one model_version series, with value 1."""
        self.model_version = version
        self.model_info.clear()
        self.model_info.labels(version).set(1)

    def checkpointed(self, at: float | None = None) -> None:
        """Call when a checkpoint was written (wall-clock seconds; default now)."""
        self._last_checkpoint = time.time() if at is None else at

    def checkpoint_age_from(self, source: Callable[[], float | None]) -> None:
        """Read the checkpoint age from ``source`` at each scrape (None: no checkpoint yet)."""
        self._checkpoint_age_source = source

    def _checkpoint_age(self) -> float:
        if self._checkpoint_age_source is not None:
            age = self._checkpoint_age_source()
            return math.nan if age is None else max(0.0, age)
        return math.nan if self._last_checkpoint is None else max(0.0, time.time() - self._last_checkpoint)

    def set_lag(self, rows: Iterable[Any]) -> None:
        """Replace the lag series with one reading (``stream.lag.LagRow`` objects)."""
        self.consumer_lag.clear()
        for row in rows:
            self.consumer_lag.labels(row.group, row.topic, str(row.partition)).set(row.lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def exported_names(self) -> set[str]:
        return exported_names(self.registry)


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry can export (even before a labelled metric has its first series)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


class OnlineRecall:
    """Test-then-train Recall@10, cheap enough for every event.

    Before an event is learned, was its item in the top-10 last published to that person on that
    platform?  The last lists are kept for the most recently active ``max_people`` (person,
    platform) pairs; the gauge is the hit rate over the last ``window`` scored events.
    """

    K = 10

    def __init__(self, metrics: Metrics, *, max_people: int = 100_000, window: int = 1000) -> None:
        self.metrics = metrics
        self.max_people = max_people
        # an OrderedDict evicts its oldest entry in O(1); a plain dict's ``next(iter(d))`` scans the holes
        # its pops left at the front, ~11-15 µs an event once the pairs outnumber ``max_people``
        self._last: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()
        self._window: deque[bool] = deque(maxlen=window)
        self._hits_in_window = 0

    def observe_many(self, answers: Iterable[tuple[str, str, str, Sequence[str]]]) -> None:
        """:meth:`observe` for a batch of ``(person, platform, item, recommended)``, counters updated once."""
        hits = trials = 0
        for person, platform, item_id, recommended in answers:
            hit = self._score(person, platform, item_id, recommended)
            if hit is not None:
                trials += 1
                hits += hit
        if trials:
            self.metrics.recall_trials.inc(trials)
            if hits:
                self.metrics.recall_hits.inc(hits)
            self.metrics.online_recall.set(self._hits_in_window / len(self._window))

    def _score(self, person: str, platform: str, item_id: str, recommended: Sequence[str]) -> bool | None:
        key = (person, platform)
        last = self._last
        previous = last.get(key)
        last[key] = tuple(recommended[: self.K])  # ten ids: a tuple scan costs less than building a set
        last.move_to_end(key)
        if len(last) > self.max_people:
            last.popitem(last=False)  # the least recently active
        if previous is None:
            return None
        hit = item_id in previous
        if len(self._window) == self._window.maxlen:
            self._hits_in_window -= self._window[0]
        self._window.append(hit)
        self._hits_in_window += hit
        return hit

    def observe(self, person: str, platform: str, item_id: str, recommended: Sequence[str]) -> bool | None:
        """Score the event against the previous list, then remember this event's list.  None: not scored."""
        hit = self._score(person, platform, item_id, recommended)
        if hit is not None:
            self.metrics.recall_trials.inc()
            if hit:
                self.metrics.recall_hits.inc()
            self.metrics.online_recall.set(self._hits_in_window / len(self._window))
        return hit


class MetricsHooks:
    """The core's hooks (``fusionrec.core.CoreHooks``) as metrics: encoder, index, ranking, checkpoints."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_encode(self, texts: int, seconds: float) -> None:
        self.metrics.encoder_batch_ms.observe(seconds * 1000)
        self.metrics.encoder_texts.inc(texts)

    def on_index(self, op: str, seconds: float) -> None:
        self.metrics.index_op_ms.labels(op).observe(seconds * 1000)

    def on_rank(self, requests: int, seconds: float) -> None:
        self.metrics.rank_batch_ms.observe(seconds * 1000)

    def on_checkpoint(self) -> None:
        self.metrics.checkpointed()

"""Prometheus metrics of a worker: one module, units in the names, ms-scale latency buckets.

A ``Metrics`` object owns its own registry, so several apps (tests) never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 75, 100, 150, 250, 500, 750, 1000, 1500, 2500, 5000, 10000)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


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

    def render(self) -> bytes:
        return generate_latest(self.registry)

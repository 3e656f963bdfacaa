"""The faust App the worker runs: faust hosts the app, its web server, pages and timers; the hot path
reads and writes Kafka itself in batches (``stream.worker``), so faust's own Kafka consumer and
producer are not started."""

from __future__ import annotations

from collections.abc import Iterable

import faust
from faust.app.base import BootStrategy
from mode import ServiceT

__all__ = ["WorkerApp"]


class WebOnlyBoot(BootStrategy):
    """Sensors and the web server; no faust consumer, producer, agents or tables."""

    enable_kafka = False

    def agents(self) -> Iterable[ServiceT]:
        return []

    def tables(self) -> Iterable[ServiceT]:
        return []


class WorkerApp(faust.App):
    BootStrategy = WebOnlyBoot

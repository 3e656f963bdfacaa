"""Shared pieces of the recovery tests: a movielens slice, publishing it, and reading results back."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer
from kafka_helpers import REPO, consume_to_end, produce, run

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, ItemUpsert, decode_recommendation, encode
from fusionrec.core import DictStates, Recommender
from fusionrec.dataset import read_events, read_items
from fusionrec.state import PersonState

MOVIELENS = REPO / "data" / "movielens-small"


def movielens_slice(n_events: int, extra_items: int = 200) -> tuple[list[ItemUpsert], list[BehaviorEvent]]:
    """The first ``n_events`` events and the items they name, plus some others to rank among."""
    events = [d.event for d in itertools.islice(read_events(MOVIELENS), n_events)]
    named = {e.item_id for e in events}
    items, others = [], 0
    for item in read_items(MOVIELENS):
        if item.item_id in named:
            items.append(item)
        elif others < extra_items:
            items.append(item)
            others += 1
    return items, events


def interleave_people(events: list[BehaviorEvent]) -> list[BehaviorEvent]:
    """The same events, people taking turns (each person's own events keep their order).

    MovieLens lists a user's ratings together, so a slice in time order has one or two people active at
    any moment: a failure would touch one person's partition at most. Taking turns keeps every person,
    and so every partition, busy for the whole stream."""
    queues: dict[str, list[BehaviorEvent]] = defaultdict(list)
    for e in events:
        queues[e.user_id].append(e)
    out: list[BehaviorEvent] = []
    for turn in itertools.zip_longest(*queues.values()):
        out += [e for e in turn if e is not None]
    return out


def publish_catalog(cfg: Config, bootstrap: str, items: list[ItemUpsert]) -> None:
    run(produce(bootstrap, [(cfg.kafka.items_topic, i.item_id.encode(), encode(i)) for i in items]))


def answered_event_ids(cfg: Config, bootstrap: str, until: set[str], timeout_s: float = 180) -> list[str]:
    """Event ids of every recommendation, read until all of ``until`` were answered (or time is up)."""
    return run(_answered(cfg, bootstrap, until, timeout_s))


async def _answered(cfg: Config, bootstrap: str, until: set[str], timeout_s: float) -> list[str]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(cfg.kafka.recs_topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    ids: list[str] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not until <= set(ids) and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                ids.extend(decode_recommendation(r.value).event_id for r in part)
        for part in (await consumer.getmany(timeout_ms=2000)).values():  # stragglers
            ids.extend(decode_recommendation(r.value).event_id for r in part)
    finally:
        await consumer.stop()
    return ids


def final_states(cfg: Config, bootstrap: str) -> dict[str, PersonState]:
    """The last value of every key of the person-state changelog: what a restarted worker restores."""
    topic = f"{cfg.worker.app_id}-person-state-changelog"
    records = run(consume_to_end(bootstrap, topic))
    latest: dict[bytes, bytes] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[r.key] = r.value
    return {k.decode(): PersonState.from_bytes(k.decode(), v) for k, v in latest.items() if v}


def reference_states(rec: Recommender, events: list[BehaviorEvent]) -> dict[str, PersonState]:
    """Per-person state after an uninterrupted, in-process run of the same events."""
    states = DictStates()
    for start in range(0, len(events), 256):
        rec.process(events[start : start + 256], states)
    return {person: PersonState.from_bytes(person, raw) for person, raw in states.items()}


def assert_same_states(got: dict[str, PersonState], want: dict[str, PersonState]) -> None:
    assert set(got) == set(want)
    for person, w in want.items():
        g = got[person]
        assert list(g.consumed) == list(w.consumed), person
        assert list(g.recent_events) == list(w.recent_events), person
        assert g.last_ts == w.last_ts, person
        assert set(g.profiles) == set(w.profiles), person
        for name, wp in w.profiles.items():
            gp = g.profiles[name]
            assert gp.n == wp.n and gp.recent == wp.recent, (person, name)
            np.testing.assert_allclose(gp.vec, wp.vec, rtol=1e-5, atol=1e-5)
            assert abs(gp.mass - wp.mass) < 1e-6 * max(1.0, wp.mass), (person, name)


class SteadyProducer(threading.Thread):
    """Publishes events at a steady rate and keeps retrying through broker outages."""

    def __init__(self, cfg: Config, bootstrap: str, events: list[BehaviorEvent], rate: float) -> None:
        super().__init__(daemon=True)
        self.cfg, self.bootstrap, self.events, self.rate = cfg, bootstrap, events, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=120_000,
            retry_backoff_ms=500,
            linger_ms=5,
        )
        await producer.start()
        try:
            start = time.monotonic()
            futures = []
            for n, e in enumerate(self.events, start=1):
                futures.append(await producer.send(self.cfg.kafka.events_topic(e.platform), encode(e), key=e.user_id.encode()))
                self.sent = n
                ahead = start + n / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            for fut in futures:
                await fut  # raises if a message was not acknowledged
        finally:
            await producer.stop()


def wait_for(predicate, timeout_s: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def count_by_event(ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for i in ids:
        counts[i] += 1
    return counts


__all__ = [
    "Path",
    "SteadyProducer",
    "answered_event_ids",
    "assert_same_states",
    "count_by_event",
    "final_states",
    "interleave_people",
    "movielens_slice",
    "publish_catalog",
    "reference_states",
    "wait_for",
]

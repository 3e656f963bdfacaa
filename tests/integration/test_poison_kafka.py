"""A poison pill never stops the worker: the hot path (``stream.worker.HotPath``) runs in this process on
the real broker around a processing core that fails on one particular event (a test double of the core
only: the consumer, producer, topics, commits and dead letters are the real ones).

* the core's ``process`` raises whenever the batch holds the poisoned event: the batch is retried one
  event at a time, the poisoned one is dead-lettered as ``processing_error``, every other event is
  answered, and the loop goes on with later events;
* the core fails later, in ranking, after the batch's person states were written: the failed attempt
  must leave no trace, so the retried events are neither flagged as duplicates nor applied twice;
* a record on the internal by-person topic that does not decode (a foreign producer, or a worker of
  another version during a rolling upgrade) is dead-lettered rather than crashing every worker that
  is assigned its partition.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import two_platforms as world
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fakes import HashEncoder

from encoder.items import ItemEncoder
from fusionrec.config import Config, load_config
from fusionrec.contracts import BehaviorEvent, DeadLetter, decode_recommendation, encode, identity_key
from fusionrec.core import Outcome, Recommender, Rejection, StateStore
from fusionrec.hashing import stable_hash
from fusionrec.state import PersonState
from stream.catalog import CatalogFollower
from stream.compose import index_factory
from stream.metrics import Metrics, OnlineRecall
from stream.topics import ensure_topics
from stream.worker import HotPath

WAIT_S = 90.0


class Exploding(Recommender):
    """The real core, except that it raises on chosen event ids: in ``process`` before anything is done,
    or in ``rank``, after the batch has been learned and its person states written."""

    def __init__(self, *args: Any, fail_process: Sequence[str] = (), fail_rank: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_process = set(fail_process)
        self.fail_rank = set(fail_rank)
        self.failures = 0
        self.failed_batches: list[int] = []  # sizes of the batches that failed

    def process(self, events: Sequence[BehaviorEvent], states: StateStore, *, rank: bool = True) -> tuple[list[Outcome], list[Rejection]]:
        hit = [e.event_id for e in events if e.event_id in self.fail_process]
        if hit:
            self.failures += 1
            self.failed_batches.append(len(events))
            raise RuntimeError(f"injected failure processing {hit[0]}")
        return super().process(events, states, rank=rank)

    def rank(self, requests: Any, k: int | None = None) -> list[tuple[list[dict[str, Any]], str | None]]:
        hit = [i for i in requests.event_id if i in self.fail_rank]
        if hit:
            self.failures += 1
            self.failed_batches.append(len(requests))
            raise RuntimeError(f"injected failure ranking {hit[0]}")
        return super().rank(requests, k)


def config(bootstrap: str, tmp_path: Path) -> Config:
    run_id = f"t{uuid.uuid4().hex[:10]}"
    return load_config(
        env={
            "FUSIONREC_KAFKA_BOOTSTRAP": bootstrap,
            "FUSIONREC_PLATFORMS": ",".join(world.PLATFORMS),
            "FUSIONREC_TOPIC_PREFIX": f"{run_id}.",
            "FUSIONREC_APP_ID": run_id,
            "FUSIONREC_PARTITIONS": "3",
            "FUSIONREC_TOP_K": "5",
            "FUSIONREC_CATALOG_WAIT_S": "2",
            "FUSIONREC_DATA_DIR": str(tmp_path / "worker"),
        }
    )


def core(cfg: Config, **kwargs: Any) -> Exploding:
    """Built like ``tests/fakes.build_core`` (hash encoder, the real candidate index), empty: the catalog
    follower loads the items from the broker."""
    return Exploding(cfg, ItemEncoder(HashEncoder(16)), index_factory(cfg), **kwargs)


async def send(cfg: Config, messages: list[tuple[str, bytes | None, bytes | None, int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for topic, key, value, partition in messages:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def events_of(cfg: Config, events: list[BehaviorEvent]) -> list[tuple[str, bytes | None, bytes | None, int | None]]:
    return [(cfg.kafka.events_topic(e.platform), e.user_id.encode(), encode(e), None) for e in events]


class Reader:
    """Reads a topic from the beginning as the test goes on."""

    def __init__(self, cfg: Config, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=cfg.kafka.bootstrap_servers, group_id=None, auto_offset_reset="earliest")
        self.values: list[bytes] = []
        self.loop: asyncio.Task[None] | None = None  # the hot path's: fail at once when it stops

    async def until(self, done: Any, what: str, timeout_s: float = WAIT_S) -> list[bytes]:
        deadline = time.monotonic() + timeout_s
        while not done(self.values):
            if self.loop is not None and self.loop.done():
                raise AssertionError(f"the hot path stopped while waiting for {what}: {self.loop.exception()!r}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}; read {len(self.values)}"
            for records in (await self.consumer.getmany(timeout_ms=300)).values():
                self.values += [r.value for r in records]
        for records in (await self.consumer.getmany(timeout_ms=1000)).values():  # anything more is a failure
            self.values += [r.value for r in records]
        return self.values


@asynccontextmanager
async def hot_path(
    cfg: Config, rec: Recommender, before: list[tuple[str, bytes | None, bytes | None, int | None]] = ()  # type: ignore[assignment]
) -> AsyncIterator[tuple[HotPath, asyncio.Task[None], Reader, Reader]]:
    """The worker's hot path and catalog follower, wired as ``stream.app.create_app`` does; ``before`` is
    published before the loop starts, so that its first iteration takes it in one batch."""
    await ensure_topics(cfg)
    await send(cfg, [(cfg.kafka.items_topic, i.item_id.encode(), encode(i), None) for i in world.items()])
    await send(cfg, [(cfg.kafka.identity_topic, identity_key(link.platform, link.user_id), encode(link), None) for link in world.links()])
    metrics = Metrics()
    catalog_letters: list[DeadLetter] = []

    async def catalog_dead_letter(letter: DeadLetter) -> None:
        catalog_letters.append(letter)

    catalog = CatalogFollower(cfg, rec, catalog_dead_letter)
    hot = HotPath(cfg, rec, catalog, metrics, OnlineRecall(metrics))
    recs, dlq = Reader(cfg, cfg.kafka.recs_topic), Reader(cfg, cfg.kafka.dlq_topic)
    await hot.start()
    await catalog.start()
    await recs.consumer.start()
    await dlq.consumer.start()
    follow = asyncio.create_task(catalog.run())
    loop: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(catalog.ready.wait(), WAIT_S)
        assert len(rec.store) == len(world.items())
        await send(cfg, list(before))
        loop = recs.loop = dlq.loop = asyncio.create_task(hot.run())
        deadline = time.monotonic() + WAIT_S
        while not hot.ready:  # partitions assigned, person state restored
            assert not loop.done(), loop.exception()
            assert time.monotonic() < deadline, "no partitions assigned"
            await asyncio.sleep(0.1)
        yield hot, loop, recs, dlq
        assert not catalog_letters
    finally:
        await hot.stop()
        if loop is not None:
            await asyncio.wait_for(asyncio.gather(loop, return_exceptions=True), 30)
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await catalog.stop()
        await recs.consumer.stop()
        await dlq.consumer.stop()


def answered(values: list[bytes]) -> list[str]:
    return [decode_recommendation(v).event_id for v in values]


def letters_of(values: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in values]


def payload(letter: dict[str, Any]) -> bytes:
    return base64.b64decode(letter["payload_b64"])


def the_world(t0: float, poison: str) -> tuple[list[BehaviorEvent], BehaviorEvent]:
    """The two-platform events with a valid event, ``poison``, in the middle: dana clicks a knife."""
    events = world.events(t0)
    bad = BehaviorEvent(poison, t0 + 5.5, "shop", "u-dana", "s-knife", "click")
    return events[:5] + [bad] + events[5:], bad


def dead_letter_count(hot: HotPath, reason: str) -> float:
    return sum(
        s.value for m in hot.metrics.registry.collect() if m.name == "fusionrec_dead_letters" for s in m.samples
        if s.name.endswith("_total") and s.labels.get("reason") == reason
    )  # fmt: skip


@pytest.mark.parametrize("where", ["process", "rank"])
def test_an_exception_on_one_event_dead_letters_it_and_the_loop_goes_on(bootstrap: str, tmp_path: Path, where: str) -> None:
    cfg = config(bootstrap, tmp_path)
    poison = f"boom-{where}"
    rec = core(cfg, **{f"fail_{where}": [poison]})

    events, bad = the_world(time.time() - 3600, poison)
    good = [e for e in events if e is not bad]

    async def scenario() -> None:
        async with hot_path(cfg, rec, before=events_of(cfg, events)) as (hot, loop, recs, dlq):
            got = await recs.until(lambda v: {e.event_id for e in good} <= set(answered(v)), "the other events' recommendations")
            letters = letters_of(await dlq.until(lambda v: len(v) >= 1, "the dead letter"))
            assert rec.failures >= 1, "the injected failure must have happened"
            assert max(rec.failed_batches) > 1, f"the poisoned event must fail in a batch with others: {rec.failed_batches}"

            summary = sorted((d["reason"], orjson.loads(payload(d))["event_id"]) for d in letters)
            assert summary == [("processing_error", poison)], f"no other event of the batch may be flagged: {summary}"
            (letter,) = letters
            assert f"injected failure {'processing' if where == 'process' else 'ranking'} {poison}" in letter["detail"]
            assert letter["topic"] == cfg.kafka.events_topic("shop") and payload(letter) == encode(bad)
            assert sorted(answered(got)) == sorted(e.event_id for e in good), "each other event answered once"
            assert dead_letter_count(hot, "processing_error") == 1 and dead_letter_count(hot, "duplicate") == 0

            # the poisoned event left no trace in dana's state, the others are in theirs once
            assert hot.states.get("shop:u-dana") is None
            alice = PersonState.from_bytes("alice", hot.states.get("alice"))  # type: ignore[arg-type]
            assert sorted(alice.recent_events) == sorted(stable_hash(e.event_id) for e in good if e.user_id in ("u-alice", "watcher-7"))

            # ...and the loop goes on: later events, dana's included, are answered
            later = [BehaviorEvent(f"later-{n}", time.time() - 60 + n, "shop", user, item, "click") for n, (user, item) in enumerate([("u-dana", "s-espresso"), ("u-bob", "s-knife")])]
            await send(cfg, events_of(cfg, later))
            got = await recs.until(lambda v: {e.event_id for e in later} <= set(answered(v)), "the later events' recommendations")
            assert not loop.done(), loop.exception() if loop.done() else None
            assert len(letters_of(dlq.values)) == 1

    asyncio.run(scenario())


def test_a_by_person_record_that_does_not_decode_is_dead_lettered(bootstrap: str, tmp_path: Path) -> None:
    cfg = config(bootstrap, tmp_path)
    rec = core(cfg)

    async def scenario() -> None:
        async with hot_path(cfg, rec) as (hot, loop, recs, dlq):
            by_person, shop = cfg.kafka.by_person_topic, cfg.kafka.events_topic("shop")
            junk = [
                (by_person, None, b"not json", 0),  # a foreign producer
                (by_person, None, orjson.dumps({"v": 2, "events": []}), 1),  # a bundle of another shape
                (by_person, None, orjson.dumps([["alice", "{}", shop, 0, 12345, None]]), 2),  # an envelope whose event is not one
            ]
            await send(cfg, junk)
            events = world.events(time.time() - 3600)
            await send(cfg, events_of(cfg, events))
            got = await recs.until(lambda v: {e.event_id for e in events} <= set(answered(v)), "every event's recommendation")
            letters = letters_of(await dlq.until(lambda v: len(v) >= len(junk), "the dead letters"))
            assert sorted(answered(got)) == sorted(e.event_id for e in events)
            got_letters = sorted((d["reason"], d["topic"], d["partition"], d["offset"], payload(d)) for d in letters)
            assert got_letters == sorted([
                ("processing_error", by_person, 0, 0, junk[0][2]),  # the record, where it was
                ("processing_error", by_person, 1, 0, junk[1][2]),
                ("processing_error", shop, 0, 12345, b"{}"),  # the envelope: the event where it says it came from
            ]), letters  # fmt: skip
            assert all(d["detail"] for d in letters)
            assert not loop.done(), loop.exception() if loop.done() else None

    asyncio.run(scenario())


def test_a_send_the_broker_refuses_stops_the_hot_path_without_committing_past_it(bootstrap: str, tmp_path: Path) -> None:
    """The module docstring of stream.worker: "a failed send stops the worker, which replays from the
    committed offsets". Here the dead-letter topic's max.message.bytes (an operator's setting) is below
    the dead letter of a 3 KB malformed message: the broker refuses it. The hot path must stop with
    that error, and the group's offsets must not pass the message whose output was lost."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.structs import TopicPartition

    cfg = config(bootstrap, tmp_path)
    rec = core(cfg)
    shop = cfg.kafka.events_topic("shop")

    async def limit_dlq(admin: AIOKafkaAdminClient) -> None:
        for response in await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, cfg.kafka.dlq_topic, {"max.message.bytes": "1000"})]):
            for code, message, *_ in response.resources:
                assert code == 0, message

    async def committed(tp: TopicPartition) -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=cfg.worker.app_id, enable_auto_commit=False)
        await consumer.start()
        try:
            return await consumer.committed(tp)
        finally:
            await consumer.stop()

    async def scenario() -> None:
        await ensure_topics(cfg)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await limit_dlq(admin)
        finally:
            await admin.close()
        async with hot_path(cfg, rec) as (hot, loop, recs, dlq):
            events = world.events(time.time() - 3600)
            await send(cfg, events_of(cfg, events))
            await recs.until(lambda v: {e.event_id for e in events} <= set(answered(v)), "every event's recommendation")
            bad = b"{" + b"x" * 3000  # malformed_json; its dead letter carries it whole, base64: ~4 KB
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await producer.start()
            try:
                md = await producer.send_and_wait(shop, bad, key=b"u-dana")
            finally:
                await producer.stop()
            done, _ = await asyncio.wait({loop}, timeout=WAIT_S)
            assert loop in done, "the hot path went on after the broker refused one of its messages"
            assert "MessageSizeTooLarge" in repr(loop.exception()), repr(loop.exception())
            position = await committed(TopicPartition(shop, md.partition))
            assert position is None or position <= md.offset, f"committed {position} past the lost dead letter at {md.offset}"

    asyncio.run(scenario())

"""The hot path of a worker: events in, recommendations out, in batches, straight on aiokafka.

Topology::

    events.<platform> ─┐                              ┌─> recs   (top-K per event, keyed by person)
    events.<platform> ─┴─ ingest ─> by-person ─ recommend ─┼─> <app_id>-person-state-changelog
       (decode, validate, resolve person)      (core)      └─> dlq

One consumer in the group ``worker.app_id`` reads the event topics and the by-person topic with
``getmany``; one idempotent producer writes every output with ``create_batch``/``send_batch``, one
batch per topic partition.  (faust's per-message stream machinery costs ~220 µs a message on this
machine, more than the whole per-event budget: ``../shared/probes/README.md``.)  faust still hosts
the app, its web pages and timers (``stream.app``).

``ingest`` resolves each valid event's person; the person's state lives on the worker that owns the
person's by-person partition (``stream.state_store``, restored from its changelog when the partition
is assigned).  When that is this worker, the event goes straight to ``recommend`` in the same
iteration; otherwise it is routed to the owner through the by-person topic (one bundle per partition
and batch), so a person's events and state always meet on one worker.

Delivery: offsets of an iteration are committed only after everything it produced (bundles,
recommendations, changelog records, dead letters) is acknowledged by the broker (``acks=all``), in
iteration order; a failed send stops the worker, which replays from the committed offsets.  A
replayed event is a duplicate for the person's state (its id is remembered) and is answered again.
On a rebalance the worker finishes its iteration and commits before it lets the partitions go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError
from aiokafka.structs import ConsumerRecord

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, DeadLetter, decode_event, encode
from fusionrec.core import Outcome, Recommender
from fusionrec.errors import DecodeError, ValidationError
from stream.catalog import CatalogFollower
from stream.kafka_settings import client_kwargs
from stream.metrics import Metrics, OnlineRecall, observe_many
from stream.partitions import PartitionCache
from stream.state_store import PersonStates

log = logging.getLogger(__name__)

__all__ = ["HotPath"]

MAX_RECORDS = 1024
"""Records taken from the consumer per iteration (events and bundles together)."""
REBALANCED = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError)
"""A commit refused because the group moved on: the partitions' next owner replays from the last
committed offsets (duplicates are recognised), so this is not an error of the worker."""
PREFETCH_S = 0.001
FETCH_MIN_BYTES = 64 * 1024
"""About 300 events of ~200 bytes."""
MAX_BUNDLE_BYTES = 512 * 1024
"""Kafka's default message.max.bytes is 1 MiB; bundles stay well under it."""


class _Outbox:
    """Messages of one iteration, grouped by topic and partition, sent as one batch per partition."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.futures: list[asyncio.Future[Any]] = []
        self._open: dict[tuple[str, int], Any] = {}
        self.on_sent: list[tuple[str, int, int, asyncio.Future[Any]]] = []  # (topic, partition, count, future)
        self._counts: dict[tuple[str, int], int] = defaultdict(int)

    def put(self, topic: str, partition: int, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None) -> bool:
        """Append to the open batch of the partition; False when it is full (then :meth:`add`)."""
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._open[(topic, partition)] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=timestamp_ms) is None:
            return False
        self._counts[(topic, partition)] += 1
        return True

    async def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None) -> None:
        if not self.put(topic, partition, key, value, timestamp_ms):
            await self._send(topic, partition)
            if not self.put(topic, partition, key, value, timestamp_ms):
                raise ValueError(f"a message of {len(value or b'')} bytes does not fit in a batch for {topic}")

    async def _send(self, topic: str, partition: int) -> None:
        batch = self._open.pop((topic, partition))
        count = self._counts.pop((topic, partition), 0)
        batch.close()
        future = await self.producer.send_batch(batch, topic, partition=partition)
        self.futures.append(future)
        self.on_sent.append((topic, partition, count, future))

    async def flush(self) -> None:
        for topic, partition in list(self._open):
            await self._send(topic, partition)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, hot: HotPath) -> None:
        self.hot = hot

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.hot.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.hot.on_assigned(assigned)


class HotPath:
    """Consume, process and produce in batches (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        rec: Recommender,
        catalog: CatalogFollower,
        metrics: Metrics,
        recall: OnlineRecall,
        on_processed: Callable[[int, dict[TopicPartition, int]], Awaitable[None]] | None = None,
        on_states: Callable[[dict[str, bytes]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.rec = rec
        self.catalog = catalog
        self.metrics = metrics
        self.recall = recall
        self.on_processed = on_processed
        self.on_states = on_states  # the packed states each batch changed (the sequence fine-tuner's journeys)
        k = cfg.kafka
        self.events_topics = {k.events_topic(p) for p in cfg.platforms}
        self.partition_of = PartitionCache(k.partitions)
        self.states = PersonStates(cfg, self.partition_of)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.lock = asyncio.Lock()  # held while an iteration runs; a rebalance waits for it
        self.restoring = False
        self.assigned: set[TopicPartition] = set()
        self._commits: asyncio.Queue[tuple[list[asyncio.Future[Any]], dict[TopicPartition, int]] | None] = asyncio.Queue()
        self._committer: asyncio.Task[None] | None = None
        self.event_types = set(cfg.model.event_weights)
        self.processed = 0
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        k, w = self.cfg.kafka, self.cfg.worker
        self.producer = AIOKafkaProducer(
            **client_kwargs(k), acks="all", enable_idempotence=True, linger_ms=2, max_batch_size=1 << 20, max_request_size=4 << 20
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(k),
            group_id=w.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 << 20,
            # the broker holds a fetch until it has this much or the window is over: bigger micro-batches
            # (a batch's fixed costs, ~10 ms, are then shared by hundreds of events) for ≤ one window of delay
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=int(w.batch_window_s * 1000),
            session_timeout_ms=int(w.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(1.0, w.session_timeout_s / 4) * 1000),
            max_poll_interval_ms=300_000,
        )
        await self.consumer.start()
        self.consumer.subscribe(sorted(self.events_topics) + [k.by_person_topic], listener=_Rebalance(self))
        self._committer = asyncio.create_task(self._commit_loop())

    async def stop(self) -> None:
        """Finish the iteration in progress, commit what it produced, leave the group."""
        self._stopping.set()
        if self.consumer is not None:
            try:
                async with self.lock:
                    await asyncio.wait_for(self._drain_commits(), timeout=30)
            except Exception as exc:  # noqa: BLE001 - a timeout, a rebalance, a send that failed: stop all the same
                log.warning("stopping without the last commit (%s): the next owner replays it", type(exc).__name__)
            await self.consumer.stop()
        if self._committer is not None:
            self._commits.put_nowait(None)
            await asyncio.gather(self._committer, return_exceptions=True)
        if self.producer is not None:
            await self.producer.stop()

    @property
    def ready(self) -> bool:
        return self.catalog.ready.is_set() and bool(self.assigned) and not self.restoring

    # ------------------------------------------------------------------------------ rebalancing

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:  # the iteration in progress finishes first
            await self._drain_commits()
        self.states.release(tp.partition for tp in revoked if tp.topic == self.cfg.kafka.by_person_topic)
        self.assigned -= revoked

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        mine = [tp.partition for tp in assigned if tp.topic == self.cfg.kafka.by_person_topic]
        # aiokafka fetches the new partitions while this runs: no iteration may process their records
        # (bundles of people whose state is not restored yet) before the restore is done
        async with self.lock:
            self.restoring = True
            try:
                began = time.monotonic()
                read = await self.states.restore(mine)
                if read:
                    log.info("restored person state of partitions %s (%d changelog records) in %.1fs", sorted(read), sum(read.values()), time.monotonic() - began)
            finally:
                self.restoring = False
            self.assigned = set(assigned)

    # ------------------------------------------------------------------------------ the loop

    async def run(self) -> None:
        await self.catalog.ready.wait()  # identity links and items must be known first
        assert self.consumer is not None
        waiting, processing = self.metrics.loop_seconds.labels("wait"), self.metrics.loop_seconds.labels("process")
        while not self._stopping.is_set():
            began = time.perf_counter()
            if self._committer is not None and self._committer.done():
                self._committer.result()  # a send failed and nothing commits any more: stop (raises)
            try:
                batches = await self.consumer.getmany(timeout_ms=int(self.cfg.worker.batch_window_s * 1000), max_records=MAX_RECORDS)
            except ConsumerStoppedError:
                if self._stopping.is_set():
                    return
                raise
            if not batches or self._stopping.is_set():
                continue
            # the fetcher shares this loop: let it ask for the next records now, so that they travel
            # while this iteration computes (else each fetch would start only after the iteration)
            await asyncio.sleep(PREFETCH_S)
            got = time.perf_counter()
            waiting.inc(got - began)
            async with self.lock:
                await self.iteration(batches)
            processing.inc(time.perf_counter() - got)

    async def iteration(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assert self.producer is not None
        outbox = _Outbox(self.producer)
        events: list[ConsumerRecord] = []
        bundles: list[ConsumerRecord] = []
        for tp, records in batches.items():
            (bundles if tp.topic == self.cfg.kafka.by_person_topic else events).extend(records)
        size = self.cfg.worker.batch_size
        # bundles first: other workers routed them here before these events arrived
        envelopes: list[Any] = []
        for r in bundles:
            try:
                envelopes += _envelopes(r.value)
            except ValueError as exc:  # a foreign or other-version record must not stop every owner of the partition
                detail = f"by-person record does not decode: {exc}"[:500]
                await self.dead_letter(outbox, DeadLetter("processing_error", detail, r.topic, r.partition, r.offset, r.value or b""))
        for start in range(0, len(events), size):
            envelopes += await self.ingest(events[start : start + size], outbox)
            await asyncio.sleep(0)  # heartbeats and the web pages share this loop
        n = 0
        for start in range(0, len(envelopes), size):
            n += await self.recommend(envelopes[start : start + size], outbox)
            await asyncio.sleep(0)
        await outbox.flush()
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        self._track_changelog(outbox)
        self._commits.put_nowait((outbox.futures, offsets))
        self.processed += n
        if self.on_processed is not None and n:
            await self.on_processed(n, offsets)

    def _track_changelog(self, outbox: _Outbox) -> None:
        topic = self.states.topic

        def done(partition: int, count: int) -> Callable[[asyncio.Future[Any]], None]:
            def note(f: asyncio.Future[Any]) -> None:
                if not f.cancelled() and f.exception() is None:
                    self.states.written(partition, f.result().offset + count)

            return note

        for t, partition, count, future in outbox.on_sent:
            if t == topic:
                future.add_done_callback(done(partition, count))

    async def _commit_loop(self) -> None:
        assert self.consumer is not None
        while True:
            item = await self._commits.get()
            try:
                if item is None:
                    return
                futures, offsets = item
                if futures:
                    await asyncio.gather(*futures)  # raises if a send failed: the worker stops
                try:
                    await self.consumer.commit(offsets)
                except REBALANCED as exc:
                    log.warning("offsets not committed, the group rebalanced (%s); the next owner replays them", type(exc).__name__)
            finally:
                self._commits.task_done()

    async def _drain_commits(self) -> None:
        if self._committer is not None and not self._committer.done():
            await self._commits.join()
        if self._committer is not None and self._committer.done() and self._committer.exception():
            raise self._committer.exception()  # type: ignore[misc]

    # ------------------------------------------------------------------------------ ingest

    async def ingest(self, records: list[ConsumerRecord], outbox: _Outbox) -> list[Any]:
        """Decode and validate; dead-letter what breaks its contract; return the envelopes of the events
        whose person's by-person partition this worker owns, and route the others to the owner through
        the by-person topic (the repartition is needed only where identity resolution put a person on
        another worker's partition)."""
        self.metrics.batch_size.labels("ingest").observe(len(records))
        cfg = self.cfg
        now = time.time()
        platforms, limits = cfg.platforms, cfg.limits
        bundles: dict[int, list[Any]] = defaultdict(list)
        valid: dict[str, int] = defaultdict(int)
        resolve = self.rec.identity.resolve
        owned = self.states.owned
        for r in records:
            raw = r.value or b""
            try:
                event = decode_event(raw, platforms=platforms, event_types=self.event_types, limits=limits, now=now, resolve=resolve)
            except ValidationError as exc:
                await self.dead_letter(outbox, DeadLetter(exc.reason, exc.detail, r.topic, r.partition, r.offset, raw))
                continue
            except Exception as exc:  # noqa: BLE001 - one message must never stop the worker
                log.exception("processing_error on %s[%d]@%d", r.topic, r.partition, r.offset)
                await self.dead_letter(outbox, DeadLetter("processing_error", f"{type(exc).__name__}: {exc}"[:500], r.topic, r.partition, r.offset, raw))
                continue
            valid[event.platform] += 1
            person = event.person_id
            assert person is not None
            partition = self.partition_of(person)
            envelope = [person, raw.decode(), r.topic, r.partition, r.offset, r.timestamp]
            if partition in owned:
                envelope.append(event)  # decoded once: recommend() takes it as it is
            bundles[partition].append(envelope)
        for platform, count in valid.items():
            self.metrics.events_total.labels(platform).inc(count)
        topic = cfg.kafka.by_person_topic
        local: list[Any] = []
        for partition, envelopes in bundles.items():
            if partition in owned:
                local += envelopes
                continue
            for bundle in _split(envelopes):
                await outbox.add(topic, partition, None, orjson.dumps(bundle))
        return local

    # ------------------------------------------------------------------------------ recommend

    async def recommend(self, envelopes: list[Any], outbox: _Outbox) -> int:
        self.metrics.batch_size.labels("recommend").observe(len(envelopes))
        try:
            events = [_event(env) for env in envelopes]
        except DecodeError:  # an envelope whose event does not decode: dead-letter it alone
            events, envelopes = await self._decodable(envelopes, outbox)
        if any(e.item_id not in self.rec.store for e in events):
            await self.catalog.sync(self.cfg.worker.catalog_wait_s)  # the item may be on its way
        states = self.states
        states.begin()  # the core writes states before it ranks: a failed attempt must leave none behind
        try:
            outcomes, rejections = self.rec.process(events, states)
        except Exception:  # noqa: BLE001 - find the one message that breaks processing, dead-letter it, go on
            states.rollback()  # else every event of the batch would be a duplicate of itself below
            log.exception("a batch of %d events failed; processing them one by one", len(events))
            outcomes, rejections = [], []
            for n, (event, env) in enumerate(zip(events, envelopes)):
                states.begin()
                try:
                    got, rejected = self.rec.process([event], states)
                except Exception as exc:  # noqa: BLE001
                    states.rollback()  # a dead-lettered event changes no state
                    await self.dead_letter(outbox, DeadLetter("processing_error", f"{type(exc).__name__}: {exc}"[:500], env[2], env[3], env[4], env[1].encode()))
                    continue
                outcomes += [_moved(o, n) for o in got]
                rejections += [type(j)(n, j.event, j.reason, j.detail) for j in rejected]
        states.commit()
        await self.publish(outcomes, envelopes, outbox)
        for rej in rejections:  # a duplicate is dead-lettered too, and was answered again above
            env = envelopes[rej.position]
            await self.dead_letter(outbox, DeadLetter(rej.reason, rej.detail, env[2], env[3], env[4], env[1].encode()))
        dirty = self.states.take_dirty()
        if self.on_states is not None:
            self.on_states(dirty)
        for person, raw in dirty.items():
            key, partition = person.encode(), self.partition_of(person)
            if not outbox.put(self.states.topic, partition, key, raw):
                await outbox.add(self.states.topic, partition, key, raw)
        self.metrics.index_items.set(len(self.rec.store))
        return len(events)

    async def _decodable(self, envelopes: list[Any], outbox: _Outbox) -> tuple[list[BehaviorEvent], list[Any]]:
        events, kept = [], []
        for env in envelopes:
            try:
                events.append(_event(env))
            except DecodeError as exc:
                await self.dead_letter(outbox, DeadLetter("processing_error", exc.detail, env[2], env[3], env[4], env[1].encode()))
                continue
            kept.append(env)
        return events, kept

    async def publish(self, outcomes: list[Outcome], envelopes: list[Any], outbox: _Outbox) -> None:
        topic = self.cfg.kafka.recs_topic
        version = self.rec.model_version
        now_ms = int(time.time() * 1000)
        published: dict[str, int] = defaultdict(int)
        variants: dict[str, int] = defaultdict(int)
        explored: dict[str, int] = defaultdict(int)
        latencies = []
        for o in outcomes:
            produced = envelopes[o.position][5]
            e = o.event
            message: dict[str, Any] = {
                "v": 1, "person_id": o.person_id, "platform": e.platform, "event_id": e.event_id, "event_ts": e.ts,
                "model_version": version, "items": o.items, "produced_at_ms": now_ms, "event_produced_at_ms": produced,
            }  # fmt: skip
            if o.variant is not None:
                message["variant"] = o.variant
            key, value, partition = o.person_id.encode(), orjson.dumps(message), self.partition_of(o.person_id)
            if not outbox.put(topic, partition, key, value):  # a coroutine only when the batch is full
                await outbox.add(topic, partition, key, value)
            published[e.platform] += 1
            variant = o.variant or "none"
            variants[variant] += 1
            n_explored = sum(1 for i in o.items if i["explored"])
            if n_explored:
                explored[variant] += n_explored
            if produced is not None:
                latencies.append(now_ms - produced)
        self.recall.observe_many((o.person_id, o.event.platform, o.event.item_id, [i["item_id"] for i in o.items]) for o in outcomes if not o.replayed)
        for platform, n in published.items():
            self.metrics.recommendations_total.labels(platform).inc(n)
        for variant, n in variants.items():
            self.metrics.variant_recommendations_total.labels(variant).inc(n)
        for variant, n in explored.items():
            self.metrics.explored_items_total.labels(variant).inc(n)
        observe_many(self.metrics.latency_ms, latencies)

    async def dead_letter(self, outbox: _Outbox, letter: DeadLetter) -> None:
        self.metrics.dead_letters_total.labels(letter.reason, letter.topic).inc()
        assert self.producer is not None
        outbox.futures.append(await self.producer.send(self.cfg.kafka.dlq_topic, encode(letter), key=letter.reason.encode()))


def _event(env: list[Any]) -> BehaviorEvent:
    """The event of an envelope (validated by ingest: its fields are trusted here); a local envelope
    carries it decoded, one that came through the by-person topic as its JSON."""
    if len(env) == 7:
        event: BehaviorEvent = env[6]
        return event
    try:
        obj = orjson.loads(env[1])
        return BehaviorEvent(
            event_id=obj["event_id"], ts=float(obj["ts"]), platform=obj["platform"], user_id=obj["user_id"],
            item_id=obj["item_id"], event_type=obj["event_type"], value=obj.get("value"),
            person_id=env[0], context=obj.get("context"),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ingest accepted it (a bug, or another version): never a crash
        raise DecodeError("processing_error", f"envelope does not decode: {type(exc).__name__}: {exc}") from None


def _envelopes(value: bytes | None) -> list[Any]:
    """The envelopes of one by-person record, each ``[person, event JSON, topic, partition, offset,
    timestamp]`` as ``ingest`` writes them; a ValueError for anything else."""
    got = orjson.loads(value or b"")
    if not isinstance(got, list) or not all(
        isinstance(e, list) and len(e) == 6 and isinstance(e[0], str) and isinstance(e[1], str) and isinstance(e[2], str)
        and type(e[3]) is int and type(e[4]) is int and (e[5] is None or type(e[5]) is int)
        for e in got
    ):  # fmt: skip
        raise ValueError("not a list of [person, event, topic, partition, offset, timestamp] envelopes")
    return got


def _moved(o: Outcome, position: int) -> Outcome:
    o.position = position
    return o


def _split(envelopes: list[Any]) -> list[list[Any]]:
    """Cut a partition's envelopes into bundles that each fit in one Kafka message."""
    bundles: list[list[Any]] = [[]]
    size = 0
    for env in envelopes:
        n = len(env[1]) + len(env[0]) + 64
        if bundles[-1] and size + n > MAX_BUNDLE_BYTES:
            bundles.append([])
            size = 0
        bundles[-1].append(env)
        size += n
    return bundles

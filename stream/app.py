"""The faust worker, built by a factory (nothing happens at import).

Topology::

    events.<platform> ─┐                        ┌─> recs        (top-K per event, keyed by person)
    events.<platform> ─┴─ ingest ─> by-person ─ recommend ─┤
          (decode, validate, resolve person)    (person-state table)  └─> dlq
    items, identity ──> CatalogFollower (every worker reads every partition: the catalog is replicated)

``ingest`` is stateless; it routes valid events to the by-person partition of their person, so that
``recommend`` and the person-state table (with its changelog) are co-partitioned: a person's state
lives on exactly one worker.  Events travel to ``recommend`` in bundles (one Kafka message per
partition per micro-batch): faust's per-message cost would otherwise exceed the work on the event.
Both agents take micro-batches so that the index is searched once per batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2
from mode.supervisors import CrashingSupervisor

from fusionrec.config import Config
from fusionrec.contracts import (
    BehaviorEvent,
    DeadLetter,
    Recommendation,
    decode_event,
    encode,
    event_fields,
)
from fusionrec.core import Outcome, Recommender
from fusionrec.errors import ValidationError
from fusionrec.fusion import PersonState
from fusionrec.protocols import TextEncoderT
from stream.catalog import CatalogFollower
from stream.checkpointing import WorkerCheckpointer
from stream.dashboard import install_ops
from stream.kafka_settings import faust_broker_credentials
from stream.metrics import Metrics
from stream.topics import ensure_topics

log = logging.getLogger(__name__)

__all__ = ["build_recommender", "create_app"]


BUNDLES_PER_TAKE = 32
"""Bundles of re-keyed events the recommend agent takes at once (each holds up to a micro-batch)."""
MAX_BUNDLE_BYTES = 512 * 1024
"""Kafka's default message.max.bytes is 1 MiB; bundles stay well under it."""


def person_partition(person: str, partitions: int) -> int:
    """The by-person partition of a person: Kafka's default partitioner (murmur2) on the person id.

    The person-state table writes its changelog with the same partitioner (``use_partitioner``), so a
    person's events and state share a partition number and therefore a worker.
    """
    return (murmur2(person.encode()) & 0x7FFFFFFF) % partitions


class PartitionCache:
    """``person_partition`` memoised for the most active people: aiokafka's murmur2 is pure Python
    (about 5 µs a call), and the same people come back event after event."""

    def __init__(self, partitions: int, max_size: int = 200_000) -> None:
        self.partitions = partitions
        self.max_size = max_size
        self._cache: dict[str, int] = {}

    def __call__(self, person: str) -> int:
        part = self._cache.get(person)
        if part is None:
            if len(self._cache) >= self.max_size:
                self._cache.clear()  # cheaper than LRU bookkeeping on every hit; refills within a batch
            part = self._cache[person] = person_partition(person, self.partitions)
        return part


def split_bundle(envelopes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Cut a partition's envelopes into bundles that each fit in one Kafka message."""
    bundles: list[list[dict[str, Any]]] = [[]]
    size = 0
    for env in envelopes:
        n = len(env["raw"]) * 2 + 200  # the raw bytes and the decoded fields, roughly
        if bundles[-1] and size + n > MAX_BUNDLE_BYTES:
            bundles.append([])
            size = 0
        bundles[-1].append(env)
        size += n
    return bundles


def build_recommender(cfg: Config) -> Recommender:
    """The processing core with the configured encoder and an empty index."""
    from encoder.cache import CachedEncoder
    from encoder.hf import TextEncoder
    from index.faiss_index import ItemIndex, set_search_threads

    if cfg.model.index_threads > 0:
        set_search_threads(cfg.model.index_threads)
    encoder: TextEncoderT = TextEncoder(cfg.model.encoder_dir or None, device=cfg.model.device)
    if cfg.model.vector_cache_dir:
        encoder = CachedEncoder(encoder, Path(cfg.model.vector_cache_dir).expanduser())
    return Recommender(cfg, encoder, ItemIndex(encoder.dim, device=cfg.model.device))


def create_app(cfg: Config, recommender: Recommender | None = None) -> Any:
    """Build the faust app, its topics, table, agents and web pages for ``cfg``."""
    import faust

    from stream.faust_app import WorkerApp

    data_dir = Path(cfg.worker.data_dir).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        cfg.worker.app_id,
        broker=[f"kafka://{hp}" for hp in cfg.kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_broker_credentials(cfg.kafka),
        store="memory://",
        datadir=str(data_dir),
        topic_partitions=cfg.kafka.partitions,
        topic_replication_factor=cfg.kafka.replication_factor,
        topic_allow_declare=True,
        web_host=cfg.worker.web_host,
        web_port=cfg.worker.web_port,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.005,
        producer_max_batch_size=1 << 20,  # recommendation messages are ~1.5 kB: batch them by the hundred
        producer_acks=-1,
        table_standby_replicas=0,
        stream_buffer_maxsize=max(4096, cfg.worker.batch_size * 4),
        broker_commit_every=cfg.worker.batch_size * 4,
        broker_commit_interval=1.0,
        broker_session_timeout=cfg.worker.session_timeout_s,
        broker_heartbeat_interval=max(1.0, cfg.worker.session_timeout_s / 4),
    )
    rec = recommender or build_recommender(cfg)
    metrics = Metrics()
    app.fusionrec_metrics = metrics  # type: ignore[attr-defined]
    app.fusionrec_recommender = rec  # type: ignore[attr-defined]
    online_recall = install_ops(app, cfg, metrics, rec)  # encoder/index timings, lag, model version, /dashboard
    k = cfg.kafka

    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    events_topic = app.topic(*(k.events_topic(p) for p in cfg.platforms), **raw)
    by_person = app.topic(k.by_person_topic, partitions=k.partitions, internal=True, **raw)
    for name in (k.recs_topic, k.dlq_topic):
        app.topic(name, **raw)  # declared so the app creates them
    states = app.Table(
        "person-state",
        partitions=k.partitions,
        key_type=bytes,  # faust derives the store's and the recovery's (raw) serializers from these
        value_type=bytes,
        schema=faust.Schema(key_type=bytes, value_type=bytes, **raw),
        use_partitioner=True,  # changelog partition = key partition, same as by-person
    )

    async def send(topic: str, key: bytes, value: bytes) -> None:
        """Queue a message on the app's producer (faust flushes it before committing offsets).

        Straight to the producer: faust's Topic.send wraps every message in futures and callbacks,
        which costs more than the message itself at thousands of events per second.
        """
        await app.producer.send(topic, key, value, partition=None, timestamp=None, headers=None)

    async def dead_letter(letter: DeadLetter) -> None:
        metrics.dead_letters_total.labels(letter.reason, letter.topic).inc()
        await send(k.dlq_topic, letter.reason.encode(), encode(letter))

    catalog = CatalogFollower(cfg, rec, dead_letter)
    event_types = set(cfg.model.event_weights)
    partition_of = PartitionCache(k.partitions)

    @app.task
    async def follow_catalog() -> None:
        await ensure_topics(cfg)
        await catalog.start()
        try:
            await catalog.run()
        finally:
            await catalog.stop()

    # An exception inside an agent must not be "handled" by restarting the agent: the batch it held would
    # be acked and lost.  The worker exits instead, and its replacement replays from committed offsets.
    crash = {"supervisor_strategy": CrashingSupervisor}

    @app.agent(events_topic, **crash)
    async def ingest(stream: Any) -> None:
        """Decode and validate; re-key valid events by person; dead-letter the rest."""
        async for batch in stream.take_events(cfg.worker.batch_size, within=cfg.worker.batch_window_s):
            metrics.batch_size.labels("ingest").observe(len(batch))
            await catalog.ready.wait()  # identity links must be known before resolving persons
            bundles: dict[int, list[dict[str, Any]]] = {}
            valid: dict[str, int] = {}
            now = time.time()
            for ev in batch:
                msg = ev.message
                try:
                    event = decode_event(
                        ev.value or b"", platforms=cfg.platforms, event_types=event_types, limits=cfg.limits, now=now
                    )
                except ValidationError as exc:
                    await dead_letter(DeadLetter(exc.reason, exc.detail, msg.topic, msg.partition, msg.offset, ev.value or b""))
                    continue
                valid[event.platform] = valid.get(event.platform, 0) + 1
                person = rec.identity.person_of(event)
                bundles.setdefault(partition_of(person), []).append(
                    {
                        "p": person,
                        "e": event_fields(event),
                        "src": [msg.topic, msg.partition, msg.offset],
                        "raw": ev.value.decode(),  # valid JSON is UTF-8; kept for an exact dead letter later
                        "pt": int(msg.timestamp * 1000) if msg.timestamp else None,
                    }
                )
            for platform, count in valid.items():  # one counter update per platform and batch
                metrics.events_total.labels(platform).inc(count)
            for partition, envelopes in bundles.items():
                for bundle in split_bundle(envelopes):
                    await app.producer.send(
                        k.by_person_topic, None, orjson.dumps(bundle), partition=partition, timestamp=None, headers=None
                    )

    def load(person: str) -> PersonState | None:
        raw_state = states.get(person.encode())
        return PersonState.from_bytes(raw_state) if raw_state else None

    def save(person: str, state: PersonState) -> None:
        states[person.encode()] = state.to_bytes()

    checkpointer = WorkerCheckpointer(cfg, rec)
    app.fusionrec_checkpointer = checkpointer  # type: ignore[attr-defined]

    @app.agent(by_person, **crash)
    async def recommend(stream: Any) -> None:
        """Learn each event into its person's state and publish fresh top-K."""
        await catalog.ready.wait()
        # the table picks changelog partitions eagerly, from the producer's metadata: have it first
        await app.producer._ensure_producer().partitions_for(states.changelog_topic.get_topic_name())
        checkpointer.restore()  # learned parameters need the catalog loaded first
        async for batch in stream.take_events(BUNDLES_PER_TAKE, within=cfg.worker.batch_window_s):
            envelopes = [env for ev in batch for env in orjson.loads(ev.value)]
            for start in range(0, len(envelopes), cfg.worker.batch_size):
                await recommend_batch(envelopes[start : start + cfg.worker.batch_size])
            for ev in batch:
                checkpointer.processed(ev.message.topic, ev.message.partition, ev.message.offset, 0)
            checkpointer.events_since += len(envelopes)
            if checkpointer.due():
                await checkpointer.checkpoint_flush_commit(app.producer.flush, lambda: app.commit(None))

    @app.on_before_shutdown.connect
    async def checkpoint_on_shutdown(app: Any, **kwargs: Any) -> None:
        if checkpointer.events_since:
            checkpointer.write()

    async def recommend_batch(envelopes: list[dict[str, Any]]) -> None:
        metrics.batch_size.labels("recommend").observe(len(envelopes))
        events = [BehaviorEvent(**env["e"]) for env in envelopes]
        if any(e.item_id not in rec.index for e in events):
            await catalog.sync(cfg.worker.catalog_wait_s)  # the item may be on its way
        outcomes, rejections = rec.process(events, load, save)
        published: dict[tuple[str, str], int] = {}  # (platform, variant) -> messages
        explored: dict[str, int] = {}
        for outcome in outcomes:
            await publish(outcome, envelopes[outcome.position].get("pt"))
            variant = outcome.variant or "none"
            key = (outcome.event.platform, variant)
            published[key] = published.get(key, 0) + 1
            n_explored = sum(1 for i in outcome.items if i.explored)
            if n_explored:
                explored[variant] = explored.get(variant, 0) + n_explored
        count_published(published, explored)
        for rej in rejections:  # a duplicate is dead-lettered too, and was answered again above
            topic, partition, offset = envelopes[rej.position]["src"]
            payload = envelopes[rej.position]["raw"].encode()
            await dead_letter(DeadLetter(rej.reason, rej.detail, topic, partition, offset, payload))
        metrics.index_items.set(len(rec.index))

    async def publish(outcome: Outcome, produced_ms: int | None) -> None:
        now_ms = int(time.time() * 1000)
        message = Recommendation(
            person_id=outcome.person_id,
            platform=outcome.event.platform,
            event_id=outcome.event.event_id,
            event_ts=outcome.event.ts,
            model_version=rec.model_version,
            items=outcome.items,
            produced_at_ms=now_ms,
            event_produced_at_ms=produced_ms,
            variant=outcome.variant,
        )
        await send(k.recs_topic, outcome.person_id.encode(), encode(message))
        if produced_ms is not None:
            metrics.latency_ms.observe(now_ms - produced_ms)
        online_recall.observe(outcome.person_id, outcome.event.platform, outcome.event.item_id, [i.item_id for i in outcome.items])

    def count_published(published: dict[tuple[str, str], int], explored: dict[str, int]) -> None:
        """The per-message counters, updated once per micro-batch (a labelled update costs microseconds)."""
        by_platform: dict[str, int] = {}
        by_variant: dict[str, int] = {}
        for (platform, variant), n in published.items():
            by_platform[platform] = by_platform.get(platform, 0) + n
            by_variant[variant] = by_variant.get(variant, 0) + n
        for platform, n in by_platform.items():
            metrics.recommendations_total.labels(platform).inc(n)
        for variant, n in by_variant.items():
            metrics.variant_recommendations_total.labels(variant).inc(n)
        for variant, n in explored.items():
            metrics.explored_items_total.labels(variant).inc(n)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"catalog_ready": catalog.ready.is_set(), "items": len(rec.index), "model_version": rec.model_version})

    _ = (ingest, recommend, follow_catalog, metrics_page, health, asyncio)
    return app

"""The worker, built by a factory (nothing happens at import).

``create_app(cfg)`` puts together: the processing core (``stream.compose``), the catalog follower
(items and identity links, replicated into every worker), the hot path (``stream.worker``: events in,
recommendations out, person state with its changelog), checkpoints (``stream.checkpointing``) and
the operations side (metrics, lag dashboard, health and readiness), all hosted by a faust app.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from fusionrec.config import Config
from fusionrec.contracts import DeadLetter, encode
from fusionrec.core import Recommender
from fusionrec.kernels import compile_kernels
from stream.catalog import CatalogFollower
from stream.checkpointing import WorkerCheckpointer
from stream.compose import build_recommender
from stream.dashboard import install_ops
from stream.kafka_settings import faust_broker_credentials
from stream.metrics import Metrics, MetricsHooks
from stream.sequence_follower import SequenceModelFollower
from stream.sequence_tuner import SequenceFineTuner
from stream.topics import ensure_topics
from stream.worker import HotPath

GC_THRESHOLDS = (50_000, 20, 100)
"""The cyclic collector's thresholds in a worker (CPython's default: 700, 10, 10).  A micro-batch
allocates and frees tens of thousands of short-lived containers; with the default, young collections
ran every few events and the full ones walked the growing heap of long-lived objects: in-process on the
8k synthetic workload (batches of 200, 300k events) the collector took 15 µs per event at the start and
64 of 255 µs per event by the end, against under 1 µs with these (186 µs per event by the end).  What
is cyclic garbage still goes at the next young collection (at most ~50k container objects later)."""

log = logging.getLogger(__name__)

__all__ = ["build_recommender", "create_app"]


def create_app(cfg: Config, recommender: Recommender | None = None) -> Any:
    """Build the worker's app for ``cfg`` (see the module docstring)."""
    from stream.faust_app import WorkerApp

    data_dir = Path(cfg.worker.data_dir).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        cfg.worker.app_id,
        broker=[f"kafka://{hp}" for hp in cfg.kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_broker_credentials(cfg.kafka),
        store="memory://",
        datadir=str(data_dir),
        web_host=cfg.worker.web_host,
        web_bind=cfg.worker.web_host,  # faust binds web_bind (default 0.0.0.0); web_host only names the URLs
        web_port=cfg.worker.web_port,
        web_in_thread=False,
    )
    metrics = Metrics()
    hooks = MetricsHooks(metrics)
    rec = recommender or build_recommender(cfg, hooks=hooks)
    rec.hooks = hooks
    recall = install_ops(app, cfg, metrics, rec)  # lag, model version, /dashboard
    hot: HotPath | None = None

    async def dead_letter(letter: DeadLetter) -> None:  # the catalog follower's bad items and links
        metrics.dead_letters_total.labels(letter.reason, letter.topic).inc()
        assert hot is not None and hot.producer is not None
        await (await hot.producer.send(cfg.kafka.dlq_topic, encode(letter), key=letter.reason.encode()))

    catalog = CatalogFollower(cfg, rec, dead_letter)
    checkpointer = WorkerCheckpointer(cfg, rec)
    sequence = SequenceModelFollower(cfg, rec)
    tuner = SequenceFineTuner(cfg, rec, sequence)

    async def processed(events: int, offsets: dict[TopicPartition, int]) -> None:
        checkpointer.processed(events, offsets)
        if checkpointer.due():
            checkpointer.start_write()

    hot = HotPath(cfg, rec, catalog, metrics, recall, on_processed=processed, on_states=tuner.saw if tuner.enabled else None)
    checkpointer.states = hot.states
    app.fusionrec_metrics = metrics  # type: ignore[attr-defined]
    app.fusionrec_recommender = rec  # type: ignore[attr-defined]
    app.fusionrec_checkpointer = checkpointer  # type: ignore[attr-defined]
    app.fusionrec_hot_path = hot  # type: ignore[attr-defined]
    app.fusionrec_sequence_follower = sequence  # type: ignore[attr-defined]
    app.fusionrec_sequence_tuner = tuner  # type: ignore[attr-defined]

    @app.task
    async def main() -> None:
        try:
            # compiled before this worker joins the group, not by its first batch (seconds without numba's cache)
            compiling = asyncio.create_task(asyncio.to_thread(compile_kernels))
            await ensure_topics(cfg)  # every topic exists before anyone subscribes to it
            log.info("compiled kernels ready in %.1f s", await compiling)
            await hot.start()
            await catalog.start()
            follow = asyncio.create_task(catalog.run())
            await catalog.ready.wait()
            checkpointer.restore()  # learned parameters need the catalog loaded first
            gc.freeze()  # the catalog and the libraries stay: keep them out of every collection
            gc.set_threshold(*GC_THRESHOLDS)
            await asyncio.gather(hot.run(), follow, sequence.run(), tuner.run())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the replacement replays from the committed offsets
            log.exception("the hot path stopped")
            await app.crash(exc)

    @app.on_before_shutdown.connect
    async def shutdown(app: Any, **kwargs: Any) -> None:
        gc.unfreeze()
        await hot.stop()
        await catalog.stop()
        await checkpointer.wait()
        if checkpointer.events_since:
            checkpointer.write()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Liveness (the process answers), with what it knows."""
        return web.json(_status(hot, catalog, rec, tuner))

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Readiness: catalog loaded, partitions assigned, no state being restored (503 otherwise)."""
        status = _status(hot, catalog, rec, tuner)
        return web.json(status, status=200 if status["ready"] else 503)

    _ = (main, shutdown, metrics_page, health, ready)
    return app


def _status(hot: HotPath, catalog: CatalogFollower, rec: Recommender, tuner: SequenceFineTuner) -> dict[str, Any]:
    return {
        "ready": hot.ready,
        "catalog_ready": catalog.ready.is_set(),
        "restoring": hot.restoring,
        "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in hot.assigned),
        "items": len(rec.store),
        "people": len(hot.states),
        "model_version": rec.model_version,
        "sequence_model_version": None if rec.sequence_model is None else rec.sequence_model.version,
        "sequence_finetune_rounds": {"run": tuner.rounds, "served": tuner.served} if tuner.enabled else None,
    }

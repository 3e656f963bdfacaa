"""Continual-learning checkpoints of a worker: when to write them, what goes in, restoring them.

A checkpoint holds the learned parameters (``learner.safetensors``: weights, statistics, context gate)
and a manifest with the model version, config digest, library versions and the offsets processed so
far.  It is taken in two steps so the event loop never waits for the disk: the learner's arrays and
the owned partitions' person states are *copied* on the loop (fast), then written in a thread.  Every
``worker.state_snapshot_every_s`` (and on a clean shutdown) the person states go to the worker's local
snapshots too (``stream.state_store``), the shortcut a restart takes into the changelog.

What a crash costs: the shared learned parameters come back as of the last checkpoint; events
processed after it are in every person's state (changelog) but not learned into the parameters again
(they are duplicates on replay), so up to one checkpoint interval of online learning is lost; no
state and no answer is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from aiokafka import TopicPartition

from fusionrec.checkpoint import Checkpoint, CheckpointStore
from fusionrec.config import Config
from fusionrec.core import Recommender
from stream.state_store import PersonStates

log = logging.getLogger(__name__)

__all__ = ["WorkerCheckpointer"]


class WorkerCheckpointer:
    def __init__(self, cfg: Config, rec: Recommender, states: PersonStates | None = None) -> None:
        self.cfg = cfg
        self.rec = rec
        self.states = states
        root = cfg.worker.checkpoint_dir or str(Path(cfg.worker.data_dir).expanduser() / "checkpoints")
        self.store = CheckpointStore(root, keep=cfg.worker.checkpoint_keep)
        self.offsets: dict[str, dict[int, int]] = {}
        self.events_since = 0
        self.last_written = time.monotonic()
        self.last_checkpoint: Checkpoint | None = None
        self.restored: Checkpoint | None = None
        self._writing: asyncio.Task[Checkpoint] | None = None
        self.last_snapshot = time.monotonic()

    def processed(self, events: int, offsets: dict[TopicPartition, int]) -> None:
        """``events`` more events processed; ``offsets``: next offset to read per topic partition."""
        for tp, offset in offsets.items():
            parts = self.offsets.setdefault(tp.topic, {})
            parts[tp.partition] = max(parts.get(tp.partition, 0), offset)
        self.events_since += events

    def due(self) -> bool:
        w = self.cfg.worker
        if self.events_since == 0 or (self._writing is not None and not self._writing.done()):
            return False
        return self.events_since >= w.checkpoint_every_events or time.monotonic() - self.last_written >= w.checkpoint_every_s

    def restore(self) -> Checkpoint | None:
        """Load the newest valid checkpoint's learned parameters (call once the catalog is loaded)."""
        ckpt = self.store.latest()
        if ckpt is None:
            return None
        self.rec.load_checkpoint(str(ckpt.path / "model"))
        self._restore_sequence_model(ckpt)
        self.offsets = {t: {int(p): o for p, o in parts.items()} for t, parts in ckpt.offsets.items()}
        self.restored = self.last_checkpoint = ckpt
        log.info("restored checkpoint %s (model %s)", ckpt.path.name, ckpt.model_version)
        return ckpt

    def _restore_sequence_model(self, ckpt: Checkpoint) -> None:
        """Serve the checkpoint's sequence network (what this worker had fine-tuned) unless
        ``model.sequence_model`` was written after the checkpoint: a file published since wins."""
        saved = self.rec.checkpointed_sequence_model(str(ckpt.path / "model"))
        if saved is None:
            return
        path = Path(self.cfg.model.sequence_model).expanduser() if self.cfg.model.sequence_model else None
        try:
            published_after = path is not None and path.stat().st_mtime > ckpt.created_at
        except OSError:
            published_after = False
        if published_after:
            log.info("checkpoint %s: the sequence model file is newer than its network; serving the file", ckpt.path.name)
            return
        self.rec.install_sequence_model(saved)
        log.info("checkpoint %s: serving its sequence network (version %s)", ckpt.path.name, saved.version)

    def start_write(self) -> asyncio.Task[Checkpoint]:
        """Copy now, write in a thread; returns the task (the next ``due`` waits for it)."""
        learned = self.rec.checkpoint_state()
        snapshot = self.states is not None and time.monotonic() - self.last_snapshot >= self.cfg.worker.state_snapshot_every_s
        people = self.states.snapshot_copies() if snapshot and self.states is not None else []
        if snapshot:
            self.last_snapshot = time.monotonic()
        offsets = {t: dict(parts) for t, parts in self.offsets.items()}
        self.events_since = 0
        self.last_written = time.monotonic()

        def write() -> Checkpoint:
            ckpt = self.store.write(
                lambda directory: self.rec.write_checkpoint(str(directory / "model"), learned),
                model_version=self.rec.model_version,
                config_digest=self.cfg.digest(),
                offsets=offsets,
            )
            if people and self.states is not None:
                self.states.write_snapshots(people)
            return ckpt

        async def run() -> Checkpoint:
            ckpt = await asyncio.to_thread(write)
            self.last_checkpoint = ckpt
            return ckpt

        self._writing = asyncio.create_task(run())
        return self._writing

    def write(self) -> Checkpoint:
        """Synchronously (a clean shutdown, tests)."""
        learned = self.rec.checkpoint_state()
        ckpt = self.store.write(
            lambda directory: self.rec.write_checkpoint(str(directory / "model"), learned),
            model_version=self.rec.model_version,
            config_digest=self.cfg.digest(),
            offsets=self.offsets,
        )
        if self.states is not None:
            self.states.write_snapshots(self.states.snapshot_copies())
        self.events_since = 0
        self.last_written = time.monotonic()
        self.last_checkpoint = ckpt
        return ckpt

    async def wait(self) -> None:
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)

    def age_s(self) -> float | None:
        return None if self.last_checkpoint is None else time.time() - self.last_checkpoint.created_at

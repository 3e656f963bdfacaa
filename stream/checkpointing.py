"""Continual-learning checkpoints of a worker: when to write them, what goes in, and restoring them.

Commit order (written down because it is the guarantee)::

    1. checkpoint: learned parameters (safetensors) + index snapshot + offsets processed so far
    2. flush the producer: every recommendation and state change of those events is on the broker
    3. commit the consumer offsets

A crash between 1 and 3 replays events the checkpoint already holds; the person state rejects them
as duplicates (their event ids are remembered), so nothing is applied twice.  Person state itself is
not in the checkpoint: it lives in the person-state table's changelog topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fusionrec.checkpoint import Checkpoint, CheckpointStore
from fusionrec.config import Config
from fusionrec.core import Recommender

log = logging.getLogger(__name__)


class WorkerCheckpointer:
    def __init__(self, cfg: Config, rec: Recommender) -> None:
        self.cfg = cfg
        self.rec = rec
        root = cfg.worker.checkpoint_dir or str(Path(cfg.worker.data_dir).expanduser() / "checkpoints")
        self.store = CheckpointStore(root, keep=cfg.worker.checkpoint_keep)
        self.offsets: dict[str, dict[int, int]] = {}
        self.events_since = 0
        self.last_written = time.monotonic()
        self.last_checkpoint: Checkpoint | None = None
        self.restored: Checkpoint | None = None

    def processed(self, topic: str, partition: int, offset: int, events: int) -> None:
        """Note that everything up to ``offset`` of ``topic``/``partition`` has been processed."""
        parts = self.offsets.setdefault(topic, {})
        parts[partition] = max(parts.get(partition, 0), offset + 1)
        self.events_since += events

    def due(self) -> bool:
        w = self.cfg.worker
        if self.events_since == 0:
            return False
        return self.events_since >= w.checkpoint_every_events or time.monotonic() - self.last_written >= w.checkpoint_every_s

    def restore(self) -> Checkpoint | None:
        """Load the newest valid checkpoint's learned parameters (call once the catalog is loaded)."""
        ckpt = self.store.latest()
        if ckpt is None:
            return None
        self.rec.load_checkpoint(str(ckpt.path / "model"))
        self.offsets = {t: {int(p): o for p, o in parts.items()} for t, parts in ckpt.offsets.items()}
        self.restored = self.last_checkpoint = ckpt
        log.info("restored checkpoint %s (model %s)", ckpt.path.name, ckpt.model_version)
        return ckpt

    def write(self) -> Checkpoint:
        def files(directory: Path) -> None:
            self.rec.save_checkpoint(str(directory / "model"))
            save = getattr(self.rec.index, "save", None)
            if save is not None:
                save(directory / "index")

        ckpt = self.store.write(
            files,
            model_version=self.rec.model_version,
            config_digest=self.cfg.digest(),
            offsets=self.offsets,
        )
        self.events_since = 0
        self.last_written = time.monotonic()
        self.last_checkpoint = ckpt
        return ckpt

    async def checkpoint_flush_commit(self, flush: Callable[[], Awaitable[None]], commit: Callable[[], Awaitable[object]]) -> Checkpoint:
        """The three steps, in their order (see the module docstring)."""
        ckpt = self.write()
        await flush()
        await commit()
        return ckpt

    def age_s(self) -> float | None:
        return None if self.last_checkpoint is None else time.time() - self.last_checkpoint.created_at

"""Serve the newest sequence model a trainer wrote: the worker follows ``model.sequence_model``.

The network is trained away from the hot path (``fusionrec train-sequence``, on a GPU where there is
one) and written over the served file by a rename (``SequenceModel.save``).  Every
``model.sequence_model_check_s`` the worker compares the file's modification time and size with those
of the one it serves; when they changed it loads the file in a thread and installs it between two
batches (the hot path runs on the event loop, so no batch sees half of it).  A file that does not load
is logged and the served model stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from fusionrec.config import Config
from fusionrec.core import Recommender
from fusionrec.errors import ConfigError
from fusionrec.learner.sequence import SequenceModel

log = logging.getLogger(__name__)

__all__ = ["SequenceModelFollower"]


class SequenceModelFollower:
    def __init__(self, cfg: Config, rec: Recommender) -> None:
        self.rec = rec
        self.every_s = cfg.model.sequence_model_check_s
        self.path = Path(cfg.model.sequence_model).expanduser() if cfg.model.sequence_model else None
        self.served = self._signature()  # the file the composition root loaded
        self.reloads = 0

    def _signature(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def adopt(self) -> None:
        """The file now holds the model served here (this worker wrote it): do not load it again."""
        self.served = self._signature()

    async def check(self) -> bool:
        """Install the file if it changed since the served one; True when a new model is served."""
        now = self._signature()
        if self.path is None or now is None or now == self.served:
            return False
        try:
            model = await asyncio.to_thread(SequenceModel.load, self.path)
        except ConfigError as exc:
            log.warning("sequence model %s not served (the previous one stays): %s", self.path, exc)
            self.served = now  # not retried until the file changes again
            return False
        self.rec.install_sequence_model(model)
        self.served = now
        self.reloads += 1
        log.info("serving the sequence model %s (version %s)", self.path, model.version)
        return True

    async def run(self) -> None:
        if self.path is None or self.every_s <= 0:
            return
        while True:
            await asyncio.sleep(self.every_s)
            await self.check()

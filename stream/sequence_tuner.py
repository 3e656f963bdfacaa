"""Fine-tune the served sequence model inside the worker, in the background (``model.sequence_finetune_every_s``).

The hot path hands over the packed states it changed in each batch (:meth:`SequenceFineTuner.saw`: one
dictionary update per batch); every ``model.sequence_finetune_every_s`` a round takes the journeys of
the people seen since the last one (at most ``model.sequence_finetune_people``, at least
``model.sequence_finetune_min_people``), and trains the served network further on them in its own
thread, at a lower CPU priority, on ``model.device`` (the GPU when there is one;
``fusionrec.learner.sequence_tuning``).  The event loop only copies the item store
(:meth:`~fusionrec.items.ItemStore.snapshot`) and, when the round beat the served weights on those
people's latest items and the network it started from is still the served one (a file another worker
or a trainer published meanwhile wins), installs the new network between two batches.  It then writes
it over ``model.sequence_model`` (a rename: the other workers following that file serve it too, and
the next round here starts from it), and the worker's next checkpoint holds it.

On a host without a GPU the training takes CPU time from the hot path (one thread, niced); the default
is off, and a trainer next to the workers (``fusionrec train-sequence --init F --out F``) is the
alternative that leaves the workers' cores alone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fusionrec.config import Config
from fusionrec.core import Recommender
from fusionrec.items import ItemStore
from fusionrec.learner.sequence import SequenceModel
from fusionrec.learner.sequence_tuning import TuningRound, fine_tune, journeys, round_settings
from stream.sequence_follower import SequenceModelFollower

log = logging.getLogger(__name__)

__all__ = ["SequenceFineTuner"]

NICE = 10  # the training thread's CPU priority below the event loop's


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)  # this thread only, on Linux
    except (OSError, AttributeError):  # another OS: the thread keeps the process's priority
        pass


class SequenceFineTuner:
    def __init__(self, cfg: Config, rec: Recommender, follower: SequenceModelFollower | None = None) -> None:
        m = cfg.model
        self.rec = rec
        self.follower = follower
        self.every_s = m.sequence_finetune_every_s
        self.path = Path(m.sequence_model).expanduser() if m.sequence_model else None
        self.cap = m.sequence_finetune_people
        self.min_people = m.sequence_finetune_min_people
        self.train = {**round_settings(m), "threads": 1}
        self.recent: dict[str, bytes] = {}  # person -> packed state, since the last round
        self.rounds = 0
        self.served = 0  # rounds whose network is served
        self.last: TuningRound | None = None
        self._thread: ThreadPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return self.every_s > 0 and self.path is not None

    def saw(self, states: dict[str, bytes]) -> None:
        """The packed states one batch changed (the hot path's dirty states)."""
        self.recent.update(states)
        over = len(self.recent) - self.cap
        if over > 0:  # the people first seen since the last round go first
            for person in list(itertools.islice(self.recent, over)):
                del self.recent[person]

    async def round(self) -> TuningRound | None:
        """One fine-tuning round now; None when there was nothing to start from or too few people."""
        served = self.rec.sequence_model
        if served is None or len(self.recent) < self.min_people:
            return None
        states, self.recent = list(self.recent.values()), {}
        store = self.rec.store.snapshot()  # on the loop: the catalog as the states saw it
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, "sequence-tuning", initializer=_lower_priority)
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self._thread, self._train, store, served, states)
        self.rounds += 1
        self.last = done
        # a file the follower installed meanwhile wins, whatever its version (one trained from scratch is 0)
        serve = done.model is not None and self.rec.sequence_model is served
        if serve and done.model is not None:
            self.rec.install_sequence_model(done.model)
            self.served += 1
            await self._publish(done.model)
        curve = done.info.get("valid_curve") or [None]
        log.info(
            "sequence model fine-tuning round %d: %d people, %d positions, %.1f s on %s; validation ndcg@10 %s -> %s (%s)",
            self.rounds, done.people, done.positions, done.seconds, done.info.get("device"), curve[0],
            done.info.get("best_valid_ndcg@10"), "served" if serve else "the served model stays",
        )
        return done

    def _train(self, store: ItemStore, served: SequenceModel, states: list[bytes]) -> TuningRound:
        return fine_tune(store, served, journeys(states, store), **self.train)

    async def _publish(self, model: SequenceModel) -> None:
        assert self.path is not None
        try:
            await asyncio.to_thread(model.save, self.path)
        except OSError as exc:
            log.warning("the fine-tuned sequence model is served here but not written to %s: %s", self.path, exc)
            return
        if self.follower is not None:
            self.follower.adopt()  # the file is the one served: not loaded again

    async def run(self) -> None:
        if not self.enabled:
            return
        try:
            while True:
                await asyncio.sleep(self.every_s)
                try:
                    await self.round()
                except Exception:  # noqa: BLE001 - a failed round leaves the served network; the next one tries again
                    log.exception("a sequence model fine-tuning round failed (the served model stays)")
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=False, cancel_futures=True)

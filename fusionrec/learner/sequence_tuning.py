"""Fine-tuning the served sequence model on the journeys a worker sees (the continual part of it).

A round takes the recent positive journeys of the people seen since the last round (each person's
``PersonState.seq``: the last ``fusion.SEQUENCE_LENGTH`` positive items of every platform, oldest
first, as the worker stores them), trains the served network on them from its own weights, and hands
back the new network only when an epoch beat the served weights on those people's latest items (each
journey's last item is its validation target, as in ``train-sequence``); otherwise the served one stays.

It runs on a *snapshot* of the item store (:meth:`~fusionrec.items.ItemStore.snapshot`) and on packed
states (immutable bytes), so the caller may run it in a thread while the event loop goes on.  Nothing
here knows of Kafka; the worker's shell (``stream.sequence_tuner``) schedules it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fusionrec.config import ModelConfig
from fusionrec.items import ItemStore
from fusionrec.learner.sequence import SequenceModel
from fusionrec.state import unpack

__all__ = ["TuningRound", "journeys", "fine_tune", "round_settings"]


@dataclass
class TuningRound:
    """What one round did: the people and positions it trained on, the validation before and after."""

    people: int
    positions: int
    model: SequenceModel | None = None  # the network to serve; None: the served one stays
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def improved(self) -> bool:
        return self.model is not None


def round_settings(model: ModelConfig) -> dict[str, Any]:
    """How a round trains, from ``model.sequence_finetune_*`` (the worker's, the evaluator's and the
    benchmark's rounds alike): its epochs, its time cap and its device."""
    return {"epochs": model.sequence_finetune_epochs, "min_train_s": model.sequence_finetune_max_s, "device": model.device}


def journeys(states: Iterable[bytes], store: ItemStore) -> list[list[str]]:
    """Each packed person state's journey as item ids, oldest first (items gone from the store are
    left out); journeys of fewer than two items train nothing and are left out too."""
    out = []
    for raw in states:
        seq = unpack(raw)[3]
        ids = []
        for h in seq:
            where = store.where_hash(h)
            if where is not None:
                ids.append(store.platforms[where[0]].ids[where[1]])
        if len(ids) >= 2:
            out.append(ids)
    return out


def fine_tune(store: ItemStore, served: SequenceModel, people: list[list[str]], **train: Any) -> TuningRound:
    """Train ``served`` further on ``people`` (journeys of item ids of ``store``, a snapshot the caller
    no longer changes); ``train``: the training settings (``epochs``, ``min_train_s`` as the round's
    time cap, ``threads``, ``device``, ``dropout``...).  Slow: run it away from the event loop."""
    from fusionrec.evaluation.sasrec import SASRecBaseline, network_config  # torch: only where it trains

    if not people:
        return TuningRound(0, 0)
    cfg = network_config(served, train_s_per_example=0.0, **train)
    net = SASRecBaseline(store, cfg, init=served)
    start = time.perf_counter()
    net.fit(people)
    info = net.info()
    done = TuningRound(len(people), int(info["examples"]), seconds=time.perf_counter() - start, info=info)
    if net.best_epoch > 0:  # epoch 0 is the served weights, kept unless beaten
        done.model = net.serving_model()
    return done

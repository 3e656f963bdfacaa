"""Core: events/s of ``Recommender.process`` in-process (no Kafka), replaying a dataset folder.

Same shape as the worker: micro-batches of 512, person state kept as bytes (``PersonState.to_bytes``)
in a dict, exactly as the worker's table holds it.  The catalog goes through the real encoder behind
the on-disk vector cache, so after the first run loading it costs little.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

BATCH = 512
QUICK_EVENTS = 3000


def build_core(dataset: str, device: str) -> tuple[Any, float, int]:
    """A Recommender for the dataset's platforms with its catalog loaded; (rec, seconds, items)."""
    from encoder.cache import CachedEncoder
    from encoder.hf import TextEncoder
    from fusionrec.config import load_config
    from fusionrec.core import Recommender
    from fusionrec.dataset import dataset_platforms, read_items
    from index.faiss_index import ItemIndex, set_search_threads

    cfg = load_config(env={**os.environ, "FUSIONREC_PLATFORMS": ",".join(dataset_platforms(dataset))})
    set_search_threads(cfg.model.index_threads or 1)
    encoder: Any = TextEncoder(cfg.model.encoder_dir or None, device=device)
    if cfg.model.vector_cache_dir:
        encoder = CachedEncoder(encoder, Path(cfg.model.vector_cache_dir).expanduser())
    rec = Recommender(cfg, encoder, ItemIndex(encoder.dim, device=device))
    items = list(read_items(dataset))
    start = time.perf_counter()
    rec.apply_items(items)
    return rec, time.perf_counter() - start, len(items)


def bench_core(dataset: str, *, device: str = "cpu", quick: bool = False, limit: int | None = None) -> dict[str, Any]:
    from fusionrec.dataset import read_events
    from fusionrec.fusion import PersonState

    rec, catalog_s, n_items = build_core(dataset, device)
    limit = limit or (QUICK_EVENTS if quick else None)
    events = [r.event for r in itertools.islice(read_events(dataset), limit)]
    store: dict[str, bytes] = {}
    timers = {"load_s": 0.0, "save_s": 0.0}

    def load(person: str) -> PersonState | None:
        t = time.perf_counter()
        raw = store.get(person)
        state = PersonState.from_bytes(raw) if raw is not None else None
        timers["load_s"] += time.perf_counter() - t
        return state

    def save(person: str, state: PersonState) -> None:
        t = time.perf_counter()
        store[person] = state.to_bytes()
        timers["save_s"] += time.perf_counter() - t

    n_recs = n_rejected = 0
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        outcomes, rejections = rec.process(events[i : i + BATCH], load, save)
        n_recs += len(outcomes)
        n_rejected += len(rejections)
    seconds = time.perf_counter() - start
    return {
        "events_per_s": len(events) / seconds,
        "events": len(events),
        "recommendations": n_recs,
        "rejected": n_rejected,
        "seconds": round(seconds, 3),
        "batch_size": BATCH,
        "state_load_s": round(timers["load_s"], 3),
        "state_save_s": round(timers["save_s"], 3),
        "catalog_items": n_items,
        "catalog_load_s": round(catalog_s, 2),
        "people": len(store),
        "device": device,
        "what": "Recommender.process over the dataset's events in batches of 512, state as bytes in a dict",
        "_store": store,
    }

"""Core: the processing core in-process (no Kafka) on a dataset folder, as the worker runs it.

Micro-batches of 512 events, person state packed in a dict (what a worker's partitions hold), the
catalog through the real encoder behind the on-disk vector cache.  Reported: events/s and CPU µs per
event over the timed part (after a warm-up, so the learner has published weights), and the **recall of
the candidate stage**: for a sample of requests, the share of the exhaustive top-10 (every item of the
platform scored by the same published model, ``fusionrec.pipeline.candidates.exhaustive_scores``) that
the served top-10 holds, with pure exploitation so the two lists are comparable.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import os
import time
from typing import Any

import numpy as np

BATCH = 512
QUICK_EVENTS = 3000
RECALL_SAMPLE = 512


def build_core(dataset: str, device: str) -> tuple[Any, float, int]:
    """The worker's core for the dataset's platforms with its catalog and identity links loaded."""
    from fusionrec.config import load_config
    from fusionrec.contracts import IdentityLink
    from fusionrec.dataset import dataset_platforms, read_items
    from stream.bench.workload import load_workload
    from stream.compose import build_recommender

    env = {**os.environ, "FUSIONREC_PLATFORMS": ",".join(dataset_platforms(dataset)), "FUSIONREC_DEVICE": device}
    rec = build_recommender(load_config(env=env))
    items = list(read_items(dataset))
    start = time.perf_counter()
    rec.apply_items(items)
    seconds = time.perf_counter() - start
    for platform, user, person in load_workload(dataset).links():
        rec.identity.link(IdentityLink(platform, user, person))
    return rec, seconds, len(items)


def bench_core(dataset: str, *, device: str = "cpu", quick: bool = False, limit: int | None = None, sequence_model: bool = False) -> dict[str, Any]:
    """``sequence_model``: train the sequence network on the warm-up's positive events and serve it
    (the ``seq`` feature) during the timed part."""
    from fusionrec.core import DictStates
    from fusionrec.dataset import read_events

    rec, catalog_s, n_items = build_core(dataset, device)
    limit = limit or (QUICK_EVENTS if quick else 60_000)
    events = [r.event for r in itertools.islice(read_events(dataset), limit)]
    warm = len(events) // 3
    states = DictStates()
    gc.freeze()  # as the worker does once its catalog is loaded
    for i in range(0, warm, BATCH):
        rec.process(events[i : i + BATCH], states)
    sequence: dict[str, Any] | str = "off"
    if sequence_model:
        sequence = train_sequence_model(rec, events[:warm], quick=quick)
    n_recs = n_rejected = 0
    cpu, start = time.process_time(), time.perf_counter()
    for i in range(warm, len(events), BATCH):
        outcomes, rejections = rec.process(events[i : i + BATCH], states)
        n_recs += len(outcomes)
        n_rejected += len(rejections)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    timed = len(events) - warm
    if sequence_model:
        assert isinstance(sequence, dict)
        sequence["fine_tuning_round"] = fine_tuning_round(rec, states, events[warm:], device)
    return {
        "events_per_s": timed / seconds,
        "cpu_us_per_event": 1e6 * cpu / max(timed, 1),
        "events": timed,
        "warmup_events": warm,
        "recommendations": n_recs,
        "rejected": n_rejected,
        "seconds": round(seconds, 3),
        "batch_size": BATCH,
        "catalog_items": n_items,
        "catalog_load_s": round(catalog_s, 2),
        "index": {p: items.index.kind for p, items in rec.store.platforms.items() if items.index is not None},
        "candidate_recall_at_10": candidate_recall(rec, states, events[-RECALL_SAMPLE:]),
        "people": len(states),
        "device": device,
        "sequence_model": sequence,
        "what": "Recommender.process over the dataset's events in batches of 512 after a warm-up of a third, state packed in a dict",
        "_store": states,
    }


def train_sequence_model(rec: Any, events: list[Any], *, quick: bool) -> dict[str, Any]:
    """Train the sequence network (text only, the serving length) on the people's positive events of
    the warm-up, install it in ``rec``; what the training did."""
    from collections import defaultdict

    from fusionrec.evaluation.sasrec import SASRecBaseline, sequence_config
    from fusionrec.fusion import event_weight

    weights = rec.cfg.model.event_weights
    seqs: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if event_weight(e.event_type, e.value, weights) > 0:
            seqs[rec.identity.person_of(e)].append(e.item_id)
    net = SASRecBaseline(rec.store, sequence_config(epochs=2 if quick else 20))
    net.fit(list(seqs.values()))  # on every core (its config's threads=0)
    rec.install_sequence_model(net.serving_model())
    info = net.info()
    return {k: info[k] for k in ("train_seconds", "epochs", "best_epoch", "best_valid_ndcg@10", "stop", "examples")} | {"blocks": net.cfg.blocks, "max_len": net.cfg.max_len}


def fine_tuning_round(rec: Any, states: Any, events: list[Any], device: str) -> dict[str, Any]:
    """One round of the worker's fine-tuning (``model.sequence_finetune_*``) on the people the timed
    events changed, the newest ``sequence_finetune_people`` of them, on one thread as the worker runs
    it: what the event loop pays (the store snapshot) and what the training thread pays."""
    from fusionrec.learner.sequence_tuning import fine_tune, journeys, round_settings

    m = rec.cfg.model
    newest = list(dict.fromkeys(rec.identity.person_of(e) for e in reversed(events)))[: m.sequence_finetune_people]
    raws = [states[p] for p in newest if p in states]
    t = time.perf_counter()
    snapshot = rec.store.snapshot()
    snapshot_ms = 1e3 * (time.perf_counter() - t)
    cpu, start = time.process_time(), time.perf_counter()
    done = fine_tune(snapshot, rec.sequence_model, journeys(raws, snapshot), **{**round_settings(m), "threads": 1, "device": device})
    return {
        "people": len(raws),
        "journeys": done.people,
        "positions": done.positions,
        "epochs": m.sequence_finetune_epochs,
        "snapshot_ms": round(snapshot_ms, 2),
        "train_cpu_s": round(time.process_time() - cpu, 2),
        "train_wall_s": round(time.perf_counter() - start, 2),
        "valid_ndcg@10": done.info.get("valid_curve"),
        "served": done.improved,
        "device": done.info.get("device"),
    }


def candidate_recall(rec: Any, states: Any, events: list[Any], k: int = 10) -> dict[str, float]:
    """Share of the exhaustive top-``k`` the served top-``k`` holds, per platform (pure exploitation)."""
    from fusionrec.pipeline.candidates import exhaustive_scores
    from fusionrec.pipeline.choose import mask_consumed
    from fusionrec.pipeline.candidates import Candidates
    from fusionrec.policy.ranker import PolicyRanker

    saved = rec.policy
    rec.policy = PolicyRanker(dataclasses.replace(rec.cfg.policy, name="none", new_item_position=0, variants=""), rec.platforms)
    try:
        persons = [rec.identity.person_of(e) for e in events]
        reqs = rec.requests_for(states, persons, [e.platform for e in events], [e.ts for e in events], [e.event_id for e in events])
        served = rec.rank_ids(reqs, k)
        out: dict[str, float] = {}
        for t, platform in enumerate(rec.platforms):
            idx = [n for n in np.flatnonzero(reqs.platform == t).tolist() if reqs.known[n]]
            if not idx or platform not in rec.learner.model.platforms:
                continue
            group = reqs.take(idx)
            items = rec.store.platforms[platform]
            seq_ids = None if rec.sequence_model is None else rec.sequence_model.id_table(platform)  # as the core ranks
            scores = exhaustive_scores(rec.learner.model.platforms[platform], items, group, seq_ids)
            cands = Candidates(np.broadcast_to(np.arange(items.n), scores.shape).copy(), scores, np.zeros(scores.shape, bool))
            mask_consumed(cands, group.consumed)
            top = np.argsort(-cands.scores, axis=1, kind="stable")[:, :k]
            ids = items.ids
            hits = [len({ids[r] for r in row} & set(served[n])) / k for row, n in zip(top.tolist(), idx)]
            out[platform] = round(float(np.mean(hits)), 4)
        return out
    finally:
        rec.policy = saved

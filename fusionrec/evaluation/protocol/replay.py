"""The offline protocol: replay a dataset folder through the processing core, in time order.

History events are learned with ``Recommender.process(..., rank=False)``, the same code the stream
workers run.  At a ``target`` event the person's *target group* (all of that person's targets with
the same ``ts``: their mutual order is unknown) is ranked before any of them is learned: for each
platform of the group, the items of that platform are ranked for the person as of that moment,
excluding every item the person already interacted with; then the targets are learned.

Counting: every target counts once.  When a group has several targets on one platform, they share
one ranking, and each target is scored against that ranking with the *other* targets of its group
removed from it (single relevant item per target; the others are neither hits nor misses for it).

Consecutive target groups (with no history event between them in the file) are ranked as one batch
before any of them is learned: a target never influences the ranking of another target of the same
batch (no leak; at most a little information is withheld).  The online learner publishes its
parameters at the start of a batch exactly as in the worker.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, IdentityLink
from fusionrec.core import DictStates, Recommender
from fusionrec.dataset import DatasetEvent, read_events, read_items
from fusionrec.evaluation.baselines import Baseline, BaselineRequest, CoOccurrence, Popularity, TextMean
from fusionrec.evaluation.cold import ColdPools
from fusionrec.evaluation.metrics import KS, BeyondAccuracy, MetricSet, intra_list_diversity, novelty_at_k
from fusionrec.fusion import event_weight
from fusionrec.policy.ranker import PolicyRanker

__all__ = ["EvalOptions", "evaluate", "replay", "ReplayResult"]

log = logging.getLogger(__name__)
MODEL = "model"
ITEM_CHUNK = 4096
BEYOND_K = 10  # coverage@10, diversity@10, novelty@10
LEARN_BATCH = int(os.environ.get("FUSIONREC_EVAL_LEARN_BATCH", "64"))
"""History is learned in micro-batches of this many events, as a worker takes them from the stream."""


@dataclass(frozen=True)
class EvalOptions:
    limit_users: int | None = None
    restrict_to_target_platform: bool = False
    policy: str | None = None  # ranking policy for the model (None: the config's)
    sasrec: bool = True
    sasrec_epochs: int | None = None
    baselines: bool = True
    k: int = max(KS)
    # the learned sequence model over text as the model's ``seq`` feature: trained on every positive
    # event of the first ``sequence_fraction`` of the stream and served from there on
    sequence_model: bool = False
    sequence_fraction: float = 0.5
    sequence_params: tuple[tuple[str, Any], ...] = ()  # SASRecConfig overrides of ``sequence_config``
    # once it is served, fine-tune it every this many learned events on the journeys of the people seen
    # since the last round, as a worker does every ``model.sequence_finetune_every_s`` (0: never)
    sequence_finetune_every: int = 0


@dataclass
class ReplayResult:
    dataset: str
    targets: int = 0
    seconds: float = 0.0
    # slice name -> method name -> metrics
    slices: dict[str, dict[str, MetricSet]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(MetricSet)))
    # slice name -> method name -> coverage / diversity / novelty at 10
    beyond: dict[str, dict[str, BeyondAccuracy]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(BeyondAccuracy))
    )
    # slice name -> platforms of its targets (the catalog that coverage is measured against)
    slice_platforms: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    info: dict[str, Any] = field(default_factory=dict)


def load_dataset(folder: str | Path, limit_users: int | None) -> list[DatasetEvent]:
    events = list(read_events(folder))
    if limit_users:
        keep: set[str] = set()
        for de in events:
            if len(keep) >= limit_users:
                break
            keep.add(de.event.user_id)
        events = [de for de in events if de.event.user_id in keep]
    return events


def person_of_user(user_id: str) -> str:
    """Dataset user ids name one person across platforms (the identity links say so)."""
    return f"u:{user_id}"


def positive_journeys(events: Iterable[DatasetEvent], weights: Mapping[str, float], per_platform: bool = False) -> list[list[str]]:
    """Each person's positive items, every platform, in the events' order: what the sequence
    network is trained on (``per_platform``: each person's platforms apart, the fusion ablation)."""
    seqs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for de in events:
        if event_weight(de.event.event_type, de.event.value, weights) > 0:
            seqs[person_of_user(de.event.user_id), de.event.platform if per_platform else ""].append(de.event.item_id)
    return list(seqs.values())


def replay(
    rec: Recommender,
    events: list[DatasetEvent],
    baselines: list[Baseline],
    *,
    k: int = max(KS),
    on_rank: Callable[[list[tuple[str, BehaviorEvent]]], None] | None = None,
    at: tuple[int, Callable[[], None]] | None = None,
    rounds: tuple[int, Callable[[list[bytes]], None]] | None = None,
) -> ReplayResult:
    """Run the protocol over ``events`` (items already in ``rec``); metrics per slice and method.

    ``on_rank`` (for tests) is called with the (person, target event) pairs just before they are ranked.
    ``at = (n, call)``: ``call()`` once everything before event ``n`` is learned, before anything of
    it or after it (the sequence model is trained and installed so, as a deployment gets its first).
    ``rounds = (n, call)``: once ``at`` was called (or from the start without one), ``call(states)``
    whenever ``n`` more events were learned, with the packed states of the people they changed (the
    sequence model's fine-tuning rounds, as a worker runs them in the background).
    """
    result = ReplayResult(dataset="")
    states = DictStates()
    seen_items: set[str] = set()  # items anyone interacted with, as learned so far
    pools = ColdPools({p: rec.store.live(p) for p in rec.store.platforms})
    linked: set[tuple[str, str]] = set()
    group_of: dict[tuple[str, float], list[int]] = defaultdict(list)
    for n, de in enumerate(events):
        if de.role == "target":
            group_of[(de.event.user_id, de.event.ts)].append(n)
    ranked_groups: set[tuple[str, float]] = set()
    rejected: dict[str, int] = defaultdict(int)
    interactions: dict[str, float] = defaultdict(float)  # item -> learned events so far (novelty)
    consumed_ids: dict[str, set[str]] = defaultdict(set)  # person -> items interacted with (baselines exclude them)
    n_interactions = 0.0
    catalog = rec.store
    touched: set[str] = set()  # people whose state changed since the last round
    learned_since = 0

    def link(event: BehaviorEvent) -> None:
        key = (event.platform, event.user_id)
        if key not in linked:
            rec.identity.link(IdentityLink(event.platform, event.user_id, person_of_user(event.user_id)))
            linked.add(key)

    def learn(events_: list[BehaviorEvent]) -> None:
        for s in range(0, len(events_), LEARN_BATCH):
            learn_batch(events_[s : s + LEARN_BATCH])

    def learn_batch(batch: list[BehaviorEvent]) -> None:
        if not batch:
            return
        for e in batch:
            link(e)
        _, rejections = rec.process(batch, states, rank=False)
        bad = {r.position for r in rejections}
        for r in rejections:
            rejected[r.reason] += 1
        weights = rec.cfg.model.event_weights

        for pos, e in enumerate(batch):
            if pos in bad:
                continue
            positive = event_weight(e.event_type, e.value, weights) > 0
            person = rec.identity.person_of(e)
            if rounds is not None:
                touched.add(person)
            consumed_ids[person].add(e.item_id)
            for b in baselines:
                b.learn(person, e.item_id, e.ts, positive)
            seen_items.add(e.item_id)
            pools.interacted(e.platform, e.item_id)
            interactions[e.item_id] += 1.0
        nonlocal n_interactions, learned_since
        n_interactions += len(batch) - len(bad)
        learned_since += len(batch) - len(bad)

    def list_vectors(ranked: list[str]) -> Any:
        vecs = [catalog.vector(i) for i in ranked]
        return np.stack([v for v in vecs if v is not None]) if any(v is not None for v in vecs) else None

    def rank_groups(groups: list[tuple[str, float]]) -> None:
        rec.learner.maybe_publish()  # as at the start of a worker batch
        requests = []  # (person, platform, ts, target events of the group on that platform, state facts)
        for key in groups:
            members = [events[n].event for n in group_of[key]]
            for e in members:
                link(e)
            person = rec.identity.person_of(members[0])
            if on_rank is not None:
                on_rank([(person, e) for e in members])
            state = states.state(person)
            by_platform: dict[str, list[BehaviorEvent]] = defaultdict(list)
            for e in members:
                if rec.store.platform_of(e.item_id) == e.platform:
                    by_platform[e.platform].append(e)
                else:
                    rejected["unknown_item"] += 1
            consumed = frozenset(consumed_ids[person])
            for platform, targets in by_platform.items():
                cross = state is not None and any(name != platform and p.n > 0 for name, p in state.profiles.items())
                requests.append((person, platform, targets[0].ts, targets, consumed, cross))
        if not requests:
            return
        kk = k + max(len(r[3]) for r in requests) - 1
        # the policy's draws are keyed by (person, event): the group's first target stands for the event
        batch = rec.requests_for(states, [r[0] for r in requests], [r[1] for r in requests], [r[2] for r in requests], [r[3][0].event_id for r in requests])
        lists: dict[str, list[list[str]]] = {MODEL: rec.rank_ids(batch, kk)}
        base_reqs = [BaselineRequest(person, platform, ts, consumed) for person, platform, ts, _, consumed, _ in requests]
        for b in baselines:
            lists[b.name] = b.rank(base_reqs, kk)
        for n, (person, platform, ts, targets, state, cross) in enumerate(requests):
            group_items = {t.item_id for t in targets}
            for t in targets:
                names = ["overall", f"platform:{platform}"]
                if cross:
                    names.append("cross_platform")
                if t.item_id not in seen_items:
                    names.append("cold_items")
                    pools.at_cold_target(platform)
                result.targets += 1
                for name in names:
                    result.slice_platforms[name].add(platform)
                for method, per in lists.items():
                    ranked = [i for i in per[n] if i == t.item_id or i not in group_items][:k]
                    vectors = list_vectors(ranked[:BEYOND_K])
                    diversity = intra_list_diversity(vectors, BEYOND_K) if vectors is not None else 0.0
                    novelty = novelty_at_k(ranked, interactions, n_interactions, BEYOND_K)
                    for name in names:
                        result.slices[name][method].add(ranked, {t.item_id})
                        result.beyond[name][method].add_scored(ranked, diversity, novelty)

    start = time.perf_counter()
    pending_history: list[BehaviorEvent] = []
    n = 0
    last_report = start
    while n < len(events):
        if at is not None and n >= at[0]:
            learn(pending_history)
            pending_history = []
            at[1]()
            at = None
            touched.clear()
            learned_since = 0
        if rounds is not None and at is None and learned_since >= rounds[0]:
            learn(pending_history)
            pending_history = []
            rounds[1]([states[p] for p in touched if p in states])
            touched.clear()
            learned_since = 0
        de = events[n]
        if de.role != "target":
            pending_history.append(de.event)
            n += 1
            continue
        learn(pending_history)
        pending_history = []
        groups: list[tuple[str, float]] = []
        to_learn: list[BehaviorEvent] = []
        while n < len(events) and events[n].role == "target":
            e = events[n].event
            key = (e.user_id, e.ts)
            if key not in ranked_groups:
                ranked_groups.add(key)
                groups.append(key)
            to_learn.append(e)
            n += 1
        rank_groups(groups)
        learn(to_learn)
        if time.perf_counter() - last_report > 30:
            last_report = time.perf_counter()
            log.info("replayed %d/%d events, %d targets, %.0fs", n, len(events), result.targets, last_report - start)
    learn(pending_history)
    result.seconds = time.perf_counter() - start
    result.info["rejected"] = dict(rejected)
    # what nobody interacted with in the whole replay (targets included) stayed in every pool as a distractor
    live = {p: rec.store.live(p) for p in rec.store.platforms}
    seen_per_platform: dict[str, int] = defaultdict(int)
    for item in seen_items:
        platform = rec.store.platform_of(item)
        if platform is not None:
            seen_per_platform[platform] += 1
    result.info["cold_item_pools"] = pools.summary({p: n - seen_per_platform[p] for p, n in live.items()})
    gc.collect()
    return result


def evaluate(cfg: Config, dataset: str | Path, options: EvalOptions, *, recommender: Recommender | None = None) -> dict[str, Any]:
    """Build the core, load the catalog (cached vectors), train SASRec, replay; the JSON report."""
    from fusionrec.evaluation.report import to_json

    t0 = time.perf_counter()
    if recommender is None:
        raise ValueError("evaluate needs the recommender to run (the CLI builds it: stream.compose.build_recommender)")
    if options.policy is not None:
        cfg = cfg.replace(policy=dataclasses.replace(cfg.policy, name=options.policy, platform_policies="", variants=""))
    rec = recommender
    rec.restrict_to_target_platform = options.restrict_to_target_platform
    rec.policy = PolicyRanker(cfg.policy, cfg.platforms)
    items = list(read_items(dataset))
    with every_core():
        t_items = time.perf_counter()
        for s in range(0, len(items), ITEM_CHUNK):
            rec.apply_items(items[s : s + ITEM_CHUNK])
        items_s = time.perf_counter() - t_items
        events = load_dataset(dataset, options.limit_users)
        info: dict[str, Any] = {"items": len(items), "events": len(events), "catalog_seconds": round(items_s, 1)}
        baselines = _baselines(rec, events, options, info)
    at = None
    if options.sequence_model:
        cut = int(len(events) * options.sequence_fraction)
        at = (cut, lambda: info.update(sequence_model=_install_sequence_model(rec, events[:cut], options)))
    rounds = None
    if options.sequence_model and options.sequence_finetune_every > 0:
        done: list[dict[str, Any]] = []
        info["sequence_finetune"] = {"every_events": options.sequence_finetune_every, "rounds": done}
        rounds = (options.sequence_finetune_every, lambda raws: done.append(_fine_tune_sequence_model(rec, raws, options)))
    result = replay(rec, events, baselines, k=options.k, at=at, rounds=rounds)
    result.dataset = str(dataset)
    result.seconds = time.perf_counter() - t0
    info.update(result.info)
    info["replay_seconds"] = round(result.seconds - items_s - info.get("sasrec_train_seconds", 0.0), 1)
    info["restrict_to_target_platform"] = options.restrict_to_target_platform
    info["exact_precision"] = rec.exact_precision
    info["policy"] = {"name": cfg.policy.name, **cfg.policy.params(), "mmr_lambda": cfg.policy.mmr_lambda,
                      "novelty_weight": cfg.policy.novelty_weight, "candidates": cfg.policy.candidates}
    info["catalog_sizes"] = {p: rec.store.live(p) for p in rec.store.platforms}
    info["learned_weights"] = {p: [round(float(x), 4) for x in w] for p, w in rec.learner.weights.items()}
    result.info = info
    return to_json(result)


@contextmanager
def every_core() -> Iterator[None]:
    """Torch on every core for the batch stages before the replay (catalog encoding, SASRec training).

    ``model.index_threads`` (one by default, for the workers) caps torch as well as FAISS when torch
    is loaded first, as in ``fusionrec eval``: they then share one OpenMP runtime, and encoding and
    training would run on one core.  The replay goes back to the workers' setting, so the figures
    measured are those of what the workers run.
    """
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _install_sequence_model(rec: Recommender, past: list[DatasetEvent], options: EvalOptions) -> dict[str, Any]:
    """Train the sequence network on the people's positive events of ``past`` (every platform, both
    roles: at that point of the stream they are all the past) and serve it; what the training did."""
    from fusionrec.evaluation.sasrec import SASRecBaseline, sequence_config

    net = SASRecBaseline(rec.store, sequence_config(**dict(options.sequence_params)))
    with every_core():
        net.fit(positive_journeys(past, rec.cfg.model.event_weights, per_platform=rec.restrict_to_target_platform))
    rec.install_sequence_model(net.serving_model())
    log.info("sequence model installed after %d events (%.0f s of training)", len(past), net.train_seconds)
    return {"trained_on_events": len(past), "fraction": options.sequence_fraction, **net.info()}


def _fine_tune_sequence_model(rec: Recommender, states: list[bytes], options: EvalOptions) -> dict[str, Any]:
    """One round of the worker's fine-tuning (``learner.sequence_tuning``) on the journeys of
    ``states``: the served network trained further, served when it beat itself on their latest items."""
    from fusionrec.learner.sequence_tuning import fine_tune, journeys, round_settings

    m = rec.cfg.model
    served = rec.sequence_model
    if served is None or len(states) < m.sequence_finetune_min_people:
        return {"people": len(states), "skipped": True}
    train = {**dict(options.sequence_params), **round_settings(m)}
    with every_core():
        done = fine_tune(rec.store, served, journeys(states, rec.store), **train)
    if done.model is not None:
        rec.install_sequence_model(done.model)
    curve = done.info.get("valid_curve") or [None]
    log.info("sequence model fine-tuned on %d people: validation %s -> %s", done.people, curve[0], done.info.get("best_valid_ndcg@10"))
    return {"people": done.people, "positions": done.positions, "seconds": round(done.seconds, 1), "valid_before": curve[0],
            "valid_best": done.info.get("best_valid_ndcg@10"), "served": done.improved}  # fmt: skip


def _baselines(rec: Recommender, events: list[DatasetEvent], options: EvalOptions, info: dict[str, Any]) -> list[Baseline]:
    """The baselines of the run, SASRec trained on the history part (its time and epochs into ``info``)."""
    if not options.baselines:
        return []
    cat = rec.store
    baselines: list[Baseline] = [Popularity(cat), CoOccurrence(cat), TextMean(cat)]
    if options.sasrec:
        from fusionrec.evaluation.sasrec import SASRecBaseline, SASRecConfig

        scfg = SASRecConfig() if options.sasrec_epochs is None else SASRecConfig(epochs=options.sasrec_epochs)
        sas = SASRecBaseline(cat, scfg)
        seqs: dict[str, list[str]] = defaultdict(list)
        for de in events:
            if de.role == "history":
                seqs[de.event.user_id].append(de.event.item_id)
        sas.fit(list(seqs.values()))
        info["sasrec_train_seconds"] = round(sas.train_seconds, 1)
        info["sasrec_epochs"] = sas.epochs_run
        baselines.append(sas)
    return baselines

"""The frozen (leave-one-out) protocol of the sequential-recommendation papers.

Every method first learns from (or is trained on) **all** ``history`` events; then every target is
ranked from that state, with nothing learned from any target: a person's targets on one platform
share one ranking over that platform's full catalog, and each is scored with the others removed from
the list (one relevant item per target, as in the streaming protocol).  Items the person interacted
with in the history are excluded unless ``keep_consumed`` (some papers keep them).

``split="valid"`` is the validation split on which hyper-parameters are chosen: each user's last
history event becomes the target and the real targets are dropped, so nothing is ever tuned on them.

A method is anything with ``name``, ``fit(history)`` (all learning before the first ranking; returns
an info dict) and ``rank(requests, k)``; :class:`BaselineMethod` adapts the replay baselines (optional
``fit`` on item sequences, then ``learn`` on every history event in order), :class:`ModelMethod` the
processing core (every history event through ``Recommender.process(..., rank=False)`` in time order
and micro-batches, the learner's last state published, then ``requests_for`` + ``rank_ids`` as the
streaming evaluator ranks, with nothing learned while ranking).  The core is built at the composition
root and handed in (``evaluate_frozen(..., recommender=...)``), as for the streaming protocol.  The
streaming protocol (``replay.py``) is untouched; this module shares its baselines, metrics and report
shape.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, IdentityLink, ItemUpsert
from fusionrec.core import DictStates, Recommender
from fusionrec.dataset import DatasetEvent, read_events, read_items
from fusionrec.errors import ConfigError
from fusionrec.evaluation.baselines import Baseline, BaselineRequest, CoOccurrence, Popularity, TextMean
from fusionrec.evaluation.cold import ColdPools, describe_pools
from fusionrec.evaluation.metrics import KS, BeyondAccuracy, MetricSet, intra_list_diversity, novelty_at_k
from fusionrec.evaluation.protocol.replay import every_core, person_of_user
from fusionrec.evaluation.sasrec import SASRecBaseline, SASRecConfig, sequence_config
from fusionrec.items import ItemStore as Catalog
from fusionrec.learner.trainer import Example
from fusionrec.protocols import TextEncoderT

__all__ = [
    "SPLITS",
    "BASELINES",
    "FrozenOptions",
    "FrozenMethod",
    "History",
    "BaselineMethod",
    "ModelMethod",
    "Split",
    "split_events",
    "build_catalog",
    "default_methods",
    "run_frozen",
    "evaluate_frozen",
    "format_frozen",
]

log = logging.getLogger(__name__)

SPLITS = ("test", "valid")
BASELINES = ("popularity", "cooccurrence", "text_mean", "sasrec")
BEYOND_K = 10
ENCODE_CHUNK = 4096


@dataclass(frozen=True)
class FrozenOptions:
    split: str = "test"  # "test": the dataset's targets; "valid": each user's last history event
    keep_consumed: bool = False
    limit_users: int | None = None
    baselines: tuple[str, ...] = BASELINES
    sasrec_config: SASRecConfig = field(default_factory=SASRecConfig)
    # the other baselines' hyper-parameters (defaults: the streaming protocol's)
    popularity_half_life_days: float = 30.0
    cooccurrence_history: int = CoOccurrence.HISTORY
    k: int = max(KS)
    model: bool = True  # the processing core too, when evaluate_frozen is given one
    policy: str | None = None  # the model's ranking policy (None: the config's, as the streaming eval)
    restrict_to_target_platform: bool = False
    # the learned sequence model over text as the model's ``seq`` feature: trained on the first
    # ``sequence_fraction`` of the history (its config: ``sequence_config``), installed from there on
    sequence_model: bool = False
    sequence_fraction: float = 0.8
    # then fine-tuned on the whole history and served for the targets (the weights stay)
    sequence_refresh: bool = True
    sequence_config: SASRecConfig = field(default_factory=sequence_config)
    # > 0: the model's ranking weights are refitted, this many passes, on each person's last history
    # item of each platform, ranked from the state before it as the targets will be (ModelMethod)
    refit_epochs: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}")
        if not 0.0 < self.sequence_fraction < 1.0:
            raise ConfigError(f"sequence_fraction must be in (0, 1); got {self.sequence_fraction}")
        if self.refit_epochs < 0:
            raise ConfigError(f"refit_epochs must be >= 0; got {self.refit_epochs}")
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise ConfigError(f"unknown baselines {sorted(unknown)}; known: {', '.join(BASELINES)}")


@dataclass(frozen=True)
class History:
    """What a method may learn from: the history events in time order, their person and polarity."""

    events: Sequence[BehaviorEvent]
    persons: Sequence[str]
    positive: Sequence[bool]

    def sequences(self, per_platform: bool = False) -> dict[str, list[str]]:
        """Each person's positive items in time order (all platforms; ``per_platform``: one sequence per
        person and platform, keyed ``person/platform``)."""
        seqs: dict[str, list[str]] = defaultdict(list)
        for e, person, pos in zip(self.events, self.persons, self.positive):
            if pos:
                seqs[f"{person}/{e.platform}" if per_platform else person].append(e.item_id)
        return dict(seqs)


class FrozenMethod(Protocol):
    name: str

    def fit(self, history: History) -> dict[str, Any]: ...

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]: ...


class BaselineMethod:
    """A replay baseline under the frozen protocol: ``fit`` on the sequences if it has one (SASRec),
    then ``learn`` every history event in order, exactly as the replay feeds it."""

    def __init__(self, baseline: Baseline) -> None:
        self.baseline = baseline
        self.name = baseline.name

    def fit(self, history: History) -> dict[str, Any]:
        info: dict[str, Any] = {}
        fit = getattr(self.baseline, "fit", None)
        if fit is not None:
            fit(list(history.sequences().values()))
            info = self.baseline.info() if hasattr(self.baseline, "info") else {}
        for e, person, pos in zip(history.events, history.persons, history.positive):
            self.baseline.learn(person, e.item_id, e.ts, pos)
        return info

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        return self.baseline.rank(requests, k)


LEARN_BATCH = int(os.environ.get("FUSIONREC_EVAL_LEARN_BATCH", "64"))
"""History is fed to the core in micro-batches of this many events (the streaming evaluator's size)."""


class ModelMethod:
    """The processing core under the frozen protocol.

    ``fit`` links every history person and feeds all history events in time order through
    ``Recommender.process(..., rank=False)`` in micro-batches (the core learns test-then-train within
    the history, as a worker does), then publishes the learner's last state.  ``rank`` builds the
    requests with ``requests_for`` from the states as the history left them and ranks them with
    ``rank_ids``, as the streaming evaluator does; it learns nothing (no event is processed).

    ``refit_epochs > 0``: the weights the core learned online saw each event with the statistics of
    its own moment (popularity then), the targets are ranked with those of the history's end.  So each
    person's last history item of each platform (when the person had an earlier positive item) is held
    back: the rest is learned, those items are ranked as training examples from the state before them
    with the end-of-history statistics, the ranking weights take ``refit_epochs`` passes of the
    learner's own step over them, and then the held-back events enter the state with the weights kept
    as refitted.  Everything stays within the history.  The core
    always excludes a person's consumed items (up to ``model.max_consumed`` of them), whatever
    ``keep_consumed`` asks of the baselines.  The policy's draws are keyed by (person, ``frozen:``
    platform), so ranking the same requests twice gives the same lists.
    """

    name = "model"

    def __init__(
        self,
        rec: Recommender,
        *,
        learn_batch: int = LEARN_BATCH,
        rank_batch: int = 1024,
        sequence: SASRecConfig | None = None,
        sequence_fraction: float = 0.8,
        sequence_refresh: bool = True,
        refit_epochs: int = 0,
    ) -> None:
        self.rec = rec
        self.states = DictStates()
        self.learn_batch = learn_batch
        self.rank_batch = rank_batch
        self.sequence = sequence
        self.sequence_fraction = sequence_fraction
        self.sequence_refresh = sequence_refresh
        self.refit_epochs = refit_epochs
        self._linked: set[tuple[str, str]] = set()

    def _link(self, e: BehaviorEvent, person: str) -> None:
        key = (e.platform, e.user_id)
        if key not in self._linked:
            self.rec.identity.link(IdentityLink(e.platform, e.user_id, person))
            self._linked.add(key)

    def fit(self, history: History) -> dict[str, Any]:
        rec = self.rec
        rejected: dict[str, int] = defaultdict(int)
        events = list(history.events)
        for e, person in zip(events, history.persons):
            self._link(e, person)
        cut = len(events) if self.sequence is None else int(len(events) * self.sequence_fraction)
        held = held_back(history) if self.refit_epochs > 0 else set()
        self._learn([e for n, e in enumerate(events[:cut]) if n not in held], rejected)
        sequence: dict[str, Any] = {}
        if self.sequence is not None:
            sequence = self._fit_sequence(history, cut)
            self._learn([e for n, e in enumerate(events[cut:], cut) if n not in held], rejected)
        refit: dict[str, Any] | str = "off"
        if held:
            order = sorted(held)
            refit = self._refit([events[n] for n in order], [history.persons[n] for n in order])
            weights = {p: w.copy() for p, w in rec.learner.weights.items()}
            self._learn([events[n] for n in order], rejected)
            rec.learner.adagrad.weights.update(weights)  # the held-back events enter the state, not the weights
        refresh: dict[str, Any] | str = "off"
        if self.sequence is not None and self.sequence_refresh:
            refresh = self._refresh_sequence(history)
        rec.learner.publish()  # the last weights and statistics, not only those of the last publication
        cfg = rec.cfg
        return {
            "sequence_model": sequence or "off",
            "sequence_model_refresh": refresh,
            "refit": refit,
            "learned_events": len(events) - sum(rejected.values()),
            "rejected": dict(rejected),
            "learn_batch": self.learn_batch,
            "rank_batch": self.rank_batch,
            "published_version": rec.learner.published_version,
            "policy": {"name": cfg.policy.name, **cfg.policy.params(), "mmr_lambda": cfg.policy.mmr_lambda,
                       "novelty_weight": cfg.policy.novelty_weight, "candidates": cfg.policy.candidates},
            "restrict_to_target_platform": rec.restrict_to_target_platform,
            "consumed": f"always excluded by the core (up to model.max_consumed={cfg.model.max_consumed} per person)",
            "learned_weights": {p: [round(float(x), 4) for x in w] for p, w in rec.learner.weights.items()},
        }  # fmt: skip

    def _learn(self, events: Sequence[BehaviorEvent], rejected: dict[str, int]) -> None:
        for s in range(0, len(events), self.learn_batch):
            _, rejections = self.rec.process(events[s : s + self.learn_batch], self.states, rank=False)
            for r in rejections:
                rejected[r.reason] += 1

    def _refit(self, events: Sequence[BehaviorEvent], persons: Sequence[str]) -> dict[str, Any]:
        """The ranking weights' refit on the held-back events (their state and the statistics as the
        rest of the history left them)."""
        rec = self.rec
        rec.learner.publish()
        examples: list[Example] = []
        for s in range(0, len(events), self.rank_batch):
            chunk, people = events[s : s + self.rank_batch], persons[s : s + self.rank_batch]
            reqs = rec.requests_for(self.states, people, [e.platform for e in chunk], [e.ts for e in chunk])
            for i, e in enumerate(chunk):
                row = rec.store.row_of(e.item_id)
                if row is None or rec.store.platform_of(e.item_id) != e.platform or not reqs.known[i]:
                    continue
                query = None if reqs.seq_query is None else reqs.seq_query[i]
                hidden = None if reqs.seq_hidden is None else reqs.seq_hidden[i]
                examples.append(Example(e.platform, row, reqs.fused[i], reqs.own[i], reqs.last[i], reqs.seq[i], None, query, hidden))
        before = {p: [round(float(x), 4) for x in w] for p, w in rec.learner.weights.items()}
        rng = np.random.default_rng(0)
        for _ in range(self.refit_epochs):
            for s in range(0, len(examples), REFIT_BATCH):
                rec.learner.train_on([examples[j] for j in rng.permutation(len(examples))[s : s + REFIT_BATCH]])
        return {"epochs": self.refit_epochs, "examples": len(examples), "held_back_events": len(events), "weights_before": before}

    def _refresh_sequence(self, history: History) -> dict[str, Any]:
        """Fine-tune the installed network on every history event and serve that for the targets, as a
        deployment's trainer refreshes the file its workers follow: the ranking weights stay those
        learned with the first network (on events it never saw); no target is in either training."""
        served = self.rec.sequence_model
        assert self.sequence is not None and served is not None
        net = SASRecBaseline(self.rec.store, self.sequence, init=served)
        net.fit(list(history.sequences(per_platform=self.rec.restrict_to_target_platform).values()))
        self.rec.install_sequence_model(net.serving_model())
        return {"trained_on_events": len(history.events), **net.info()}

    def _fit_sequence(self, history: History, cut: int) -> dict[str, Any]:
        """Train the sequence model on the people's positive items among the first ``cut`` history
        events and install it: the ranker learns the ``seq`` weight from the events after ``cut``,
        which the network never saw (trained on them, it would look better than it is)."""
        assert self.sequence is not None
        first = History(history.events[:cut], history.persons[:cut], history.positive[:cut])
        net = SASRecBaseline(self.rec.store, self.sequence)
        # restricted to the target platform (the fusion ablation), each platform's journey apart: the
        # network learns what it reads when serving, nothing of another platform
        net.fit(list(first.sequences(per_platform=self.rec.restrict_to_target_platform).values()))
        self.rec.install_sequence_model(net.serving_model())
        return {"trained_on_events": cut, "fraction": self.sequence_fraction, **net.info()}

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        out: list[list[str]] = []
        for s in range(0, len(requests), self.rank_batch):  # bounded memory; each list is independent
            chunk = requests[s : s + self.rank_batch]
            batch = self.rec.requests_for(
                self.states,
                [r.person for r in chunk],
                [r.platform for r in chunk],
                [r.ts for r in chunk],
                [f"frozen:{r.platform}" for r in chunk],
            )
            out.extend(self.rec.rank_ids(batch, k))
        return out


REFIT_BATCH = 32  # examples per learner step, as the stream's batches give at most (max_examples)


def held_back(history: History) -> set[int]:
    """Indices of each person's last positive history event of each platform, for people with an
    earlier positive event (on any platform): something to rank it from."""
    last: dict[tuple[str, str], int] = {}
    first: dict[str, int] = {}
    for n, (e, person, pos) in enumerate(zip(history.events, history.persons, history.positive)):
        if pos:
            first.setdefault(person, n)
            last[(person, e.platform)] = n
    return {n for (person, _), n in last.items() if n > first[person]}


MethodFactory = Callable[[Catalog], FrozenMethod]


def default_methods(options: FrozenOptions) -> list[MethodFactory]:
    """The options' baselines, in the order of ``BASELINES`` (SASRec with the options' config)."""
    sas = replace(options.sasrec_config, valid_keep_consumed=options.keep_consumed)

    def cooccurrence(c: Catalog) -> Baseline:
        b = CoOccurrence(c)
        b.HISTORY = options.cooccurrence_history  # the items of a person's history it pairs and sums
        return b

    make: dict[str, Callable[[Catalog], Baseline]] = {
        "popularity": lambda c: Popularity(c, half_life_s=options.popularity_half_life_days * 86400.0),
        "cooccurrence": cooccurrence,
        "text_mean": TextMean,
        "sasrec": lambda c: SASRecBaseline(c, sas),
    }
    return [lambda c, f=make[name]: BaselineMethod(f(c)) for name in BASELINES if name in options.baselines]


# --- data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    history: list[DatasetEvent]
    targets: list[DatasetEvent]


def split_events(events: Sequence[DatasetEvent], split: str) -> Split:
    """History and targets of ``split``: the dataset's, or (``valid``) each user's last history event
    as the target, with the real targets dropped."""
    history = [de for de in events if de.role == "history"]
    if split == "test":
        return Split(history, [de for de in events if de.role == "target"])
    if split != "valid":
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    last: dict[str, int] = {}
    for n, de in enumerate(history):  # file order is time order, ties in the source's order
        last[de.event.user_id] = n
    chosen = set(last.values())
    return Split(
        [de for n, de in enumerate(history) if n not in chosen],
        [replace(de, role="target") for n, de in enumerate(history) if n in chosen],
    )


def limit_users(events: list[DatasetEvent], n: int | None) -> list[DatasetEvent]:
    """The events of the first ``n`` users to appear (all of them when ``n`` is None)."""
    if not n:
        return events
    keep: set[str] = set()
    for de in events:
        if len(keep) >= n:
            break
        keep.add(de.event.user_id)
    return [de for de in events if de.event.user_id in keep]


def default_encoder(cfg: Config) -> TextEncoderT:
    """The workers' encoder with the on-disk vector cache (a second run encodes nothing)."""
    from encoder.cache import CachedEncoder
    from encoder.hf import TextEncoder

    encoder: TextEncoderT = TextEncoder(cfg.model.encoder_dir or None, device=cfg.model.device)
    if cfg.model.vector_cache_dir:
        encoder = CachedEncoder(encoder, Path(cfg.model.vector_cache_dir).expanduser())
    return encoder


def build_catalog(items: Sequence[ItemUpsert], encoder: TextEncoderT) -> Catalog:
    """A catalog of ``items`` with their text vectors, built as the core builds its own (same text
    template, so the vector cache hits)."""
    from encoder.templates import item_text

    catalog = Catalog(encoder.dim)
    with every_core():
        for s in range(0, len(items), ENCODE_CHUNK):
            chunk = items[s : s + ENCODE_CHUNK]
            vectors = encoder.encode([item_text(m.title, m.text, m.platform, m.categories) for m in chunk])
            catalog.upsert([m.item_id for m in chunk], [m.platform for m in chunk], np.asarray(vectors, np.float32))
    return catalog


# --- the protocol -------------------------------------------------------------------------------------


@dataclass
class FrozenResult:
    targets: int = 0
    skipped: int = 0  # targets whose item is not in the catalog of its platform
    slices: dict[str, dict[str, MetricSet]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(MetricSet)))
    beyond: dict[str, dict[str, BeyondAccuracy]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(BeyondAccuracy))
    )
    slice_platforms: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    info: dict[str, Any] = field(default_factory=dict)
    cold_item_pools: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Group:
    """One person's targets on one platform: ranked once, from the history only."""

    person: str
    platform: str
    ts: float
    targets: tuple[str, ...]
    cross: bool  # the person has history on another platform


def _groups(split: Split, catalog: Catalog, result: FrozenResult) -> list[_Group]:
    by: dict[tuple[str, str], list[BehaviorEvent]] = defaultdict(list)
    for de in split.targets:
        e = de.event
        where = catalog.row.get(e.item_id)
        if where is None or where[0] != e.platform:
            result.skipped += 1
            continue
        by[(person_of_user(e.user_id), e.platform)].append(e)
    platforms: dict[str, set[str]] = defaultdict(set)
    for de in split.history:
        platforms[person_of_user(de.event.user_id)].add(de.event.platform)
    groups = []
    for (person, platform), evs in sorted(by.items(), key=lambda kv: max(e.ts for e in kv[1])):
        ts, targets = max(e.ts for e in evs), tuple(e.item_id for e in evs)
        groups.append(_Group(person, platform, ts, targets, cross=bool(platforms[person] - {platform})))
    return groups


def run_frozen(
    catalog: Catalog,
    split: Split,
    methods: Sequence[FrozenMethod],
    *,
    positive: Callable[[BehaviorEvent], bool],
    keep_consumed: bool = False,
    k: int = max(KS),
    on_rank: Callable[[str], None] | None = None,
) -> FrozenResult:
    """Fit every method on the history, then rank every target group; metrics per slice and method.

    ``on_rank`` (for tests) is called with a method's name just before its ranking call.
    """
    result = FrozenResult()
    history = History(
        [de.event for de in split.history],
        [person_of_user(de.event.user_id) for de in split.history],
        [positive(de.event) for de in split.history],
    )
    consumed: dict[str, set[str]] = defaultdict(set)
    interactions: dict[str, float] = defaultdict(float)  # novelty: the history's interaction counts
    for e, person in zip(history.events, history.persons):
        consumed[person].add(e.item_id)
        interactions[e.item_id] += 1.0
    groups = _groups(split, catalog, result)
    result.cold_item_pools = _cold_pools(catalog, interactions, groups)
    requests = [
        BaselineRequest(g.person, g.platform, g.ts, frozenset() if keep_consumed else frozenset(consumed[g.person]))
        for g in groups
    ]
    kk = k + max((len(g.targets) for g in groups), default=1) - 1
    for method in methods:
        t0 = time.perf_counter()
        info = method.fit(history)
        fit_s = time.perf_counter() - t0
        if on_rank is not None:
            on_rank(method.name)
        t1 = time.perf_counter()
        lists = method.rank(requests, kk)
        rank_s = time.perf_counter() - t1
        result.info[method.name] = {**info, "fit_seconds": round(fit_s, 1), "rank_seconds": round(rank_s, 1)}
        _score(result, groups, lists, method.name, interactions, catalog, k)
        log.info("%s: fitted in %.1fs, ranked %d groups", method.name, fit_s, len(groups))
    result.targets = sum(len(g.targets) for g in groups)
    return result


def _cold_pools(catalog: Catalog, interactions: Mapping[str, float], groups: Sequence[_Group]) -> dict[str, Any]:
    """The pool of every cold target (its platform's items nobody interacted with in the history: the
    same for all targets of a platform here), and the items nobody interacts with at all."""
    pools = ColdPools({p: catalog.size(p) for p in catalog.ids})
    ever: dict[str, set[str]] = defaultdict(set)
    for item in interactions:
        platform = catalog.platform_of(item)
        if platform is not None:
            pools.interacted(platform, item)
            ever[platform].add(item)
    for g in groups:
        for target in g.targets:
            if target not in interactions:
                pools.at_cold_target(g.platform)
            ever[g.platform].add(target)
    return pools.summary({p: catalog.size(p) - len(ever[p]) for p in catalog.ids})


def _score(
    result: FrozenResult,
    groups: Sequence[_Group],
    lists: Sequence[Sequence[str]],
    method: str,
    interactions: Mapping[str, float],
    catalog: Catalog,
    k: int,
) -> None:
    total = float(sum(interactions.values()))
    for g, ranked_all in zip(groups, lists):
        group_items = set(g.targets)
        for target in g.targets:
            names = ["overall", f"platform:{g.platform}"]
            if g.cross:
                names.append("cross_platform")
            if target not in interactions:
                names.append("cold_items")
            # the other targets of the group are neither hits nor misses for this one
            ranked = [i for i in ranked_all if i == target or i not in group_items][:k]
            vecs = [v for v in (catalog.vector(i) for i in ranked[:BEYOND_K]) if v is not None]
            diversity = intra_list_diversity(np.stack(vecs), BEYOND_K) if vecs else 0.0
            novelty = novelty_at_k(ranked, interactions, total, BEYOND_K)
            for name in names:
                result.slice_platforms[name].add(g.platform)
                result.slices[name][method].add(ranked, {target})
                result.beyond[name][method].add_scored(ranked, diversity, novelty)


def evaluate_frozen(
    cfg: Config,
    dataset: str | Path,
    options: FrozenOptions,
    *,
    methods: Sequence[MethodFactory] | None = None,
    encoder: TextEncoderT | None = None,
    recommender: Recommender | None = None,
) -> dict[str, Any]:
    """Read ``dataset``, build the catalog (cached text vectors), run the frozen protocol with
    ``methods`` (default: every baseline, SASRec included); the JSON report.

    Given ``recommender`` (the CLI builds it: ``stream.compose.build_recommender``) and
    ``options.model``, the items go into the core's store, which is then the baselines' catalog too
    (one encoding), and the core runs first as :class:`ModelMethod`, with ``options.policy`` (None:
    the config's, as in the streaming protocol)."""
    import dataclasses

    from fusionrec.fusion import event_weight
    from fusionrec.policy.ranker import PolicyRanker

    t0 = time.perf_counter()
    items = list(read_items(dataset))
    rec = recommender if options.model else None
    if rec is not None:
        if options.policy is not None:
            cfg = cfg.replace(policy=dataclasses.replace(cfg.policy, name=options.policy, platform_policies="", variants=""))
        rec.restrict_to_target_platform = options.restrict_to_target_platform
        rec.policy = PolicyRanker(cfg.policy, cfg.platforms)
        with every_core():
            for s in range(0, len(items), ENCODE_CHUNK):
                rec.apply_items(items[s : s + ENCODE_CHUNK])
        catalog = rec.store
    else:
        catalog = build_catalog(items, encoder or default_encoder(cfg))
    catalog_s = time.perf_counter() - t0
    events = limit_users(list(read_events(dataset)), options.limit_users)
    split = split_events(events, options.split)
    weights = cfg.model.event_weights
    built = [factory(catalog) for factory in (default_methods(options) if methods is None else methods)]
    if rec is not None:
        sequence = options.sequence_config if options.sequence_model else None
        built.insert(0, ModelMethod(rec, sequence=sequence, sequence_fraction=options.sequence_fraction, sequence_refresh=options.sequence_refresh, refit_epochs=options.refit_epochs))
    result = run_frozen(
        catalog, split, built,
        positive=lambda e: event_weight(e.event_type, e.value, weights) > 0,
        keep_consumed=options.keep_consumed, k=options.k,
    )  # fmt: skip
    info = {
        "items": len(items),
        "history_events": len(split.history),
        "skipped_targets": result.skipped,
        "catalog_seconds": round(catalog_s, 1),
        "methods": result.info,
        "catalog_sizes": {p: catalog.size(p) for p in sorted(catalog.ids)},
        "cold_item_pools": result.cold_item_pools,
    }
    protocol = {"name": "frozen", "split": options.split, "keep_consumed": options.keep_consumed,
                "limit_users": options.limit_users}  # fmt: skip
    info["baseline_params"] = {"popularity_half_life_days": options.popularity_half_life_days,
                               "cooccurrence_history": options.cooccurrence_history}  # fmt: skip
    if rec is None:
        why = "--no-model" if not options.model else "no recommender was given to evaluate_frozen"
        info["model"] = f"not run: {why}"
    else:
        info["exact_precision"] = rec.exact_precision
        if options.keep_consumed:
            info["model_consumed"] = "the model still excludes the person's consumed items (the core always does)"
    return frozen_report(str(dataset), protocol, result, time.perf_counter() - t0, info)


# --- report -------------------------------------------------------------------------------------------

MODEL = "model"


def _row(ms: MetricSet, beyond: BeyondAccuracy | None, catalog_size: int) -> dict[str, float]:
    row = {name: round(v, 5) for name, v in ms.mean().items()}
    if beyond is not None:
        row.update({name: round(v, 5) for name, v in beyond.mean(catalog_size).items()})
    return row


def frozen_report(
    dataset: str, protocol: dict[str, Any], result: FrozenResult, seconds: float, info: dict[str, Any]
) -> dict[str, Any]:
    """The streaming report's shape, plus ``protocol``; ``model`` is None when the model did not run."""
    sizes: dict[str, int] = info["catalog_sizes"]

    def part(name: str) -> dict[str, Any]:
        per, beyond = result.slices.get(name, {}), result.beyond.get(name, {})
        size = sum(sizes.get(p, 0) for p in result.slice_platforms.get(name, ()))
        rows = {m: _row(per[m], beyond.get(m), size) for m in per}
        n = max((s.n for s in per.values()), default=0)
        return {"targets": n, "model": rows.pop(MODEL, None), "baselines": rows}

    overall = part("overall")
    slices: dict[str, Any] = {name: part(name) for name in ("cross_platform", "cold_items")}
    slices["per_platform"] = {
        name.split(":", 1)[1]: part(name) for name in sorted(result.slices) if name.startswith("platform:")
    }
    if overall["model"] is None and "model" not in info:
        info = {**info, "model": "not run"}
    return {
        "dataset": dataset,
        "protocol": protocol,
        "targets": result.targets,
        "seconds": round(seconds, 1),
        "model": overall["model"],
        "baselines": overall["baselines"],
        "slices": slices,
        "info": info,
    }


def format_frozen(report: dict[str, Any]) -> str:
    """Markdown tables: overall, then every slice; the model's row only when it ran."""
    p = report["protocol"]
    head = f"dataset {report['dataset']}: protocol {p['name']}, split {p['split']}, "
    head += "consumed kept" if p["keep_consumed"] else "consumed excluded"
    head += f"; {report['targets']} targets, {report['seconds']}s"
    lines = [head, ""]

    def table(title: str, part: dict[str, Any]) -> None:
        rows = ([("model", part["model"])] if part["model"] is not None else []) + list(part["baselines"].items())
        if not rows:
            return
        columns = list(rows[0][1])
        lines.append(f"{title} ({part['targets']} targets)")
        lines.append("| method | " + " | ".join(columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for name, row in rows:
            lines.append(f"| {name} | " + " | ".join(f"{row.get(m, float('nan')):.4f}" for m in columns) + " |")
        lines.append("")

    table("overall", {"targets": report["targets"], "model": report["model"], "baselines": report["baselines"]})
    s = report["slices"]
    for name in ("cross_platform", "cold_items"):
        table(name, s[name])
    if pools := describe_pools(report["info"].get("cold_item_pools")):
        lines += [pools, ""]
    for platform, part in s["per_platform"].items():
        table(f"platform {platform}", part)
    for name, info in report["info"]["methods"].items():
        if "best_valid_ndcg@10" in info:
            lines.append(
                f"{name}: {info['epochs']} epochs (best {info['best_epoch']}, stop: {info['stop']}), "
                f"{info['train_seconds']}s training (cap {info['time_cap_s']}s, {info['examples']} examples), "
                f"best validation ndcg@10 {info['best_valid_ndcg@10']}"
            )
    return "\n".join(lines)

"""The processing core: the same code path in the stream workers and in the offline evaluator.

It knows nothing of Kafka.  The worker hands it micro-batches of decoded events and a store of packed
person states; it returns recommendations and rejections (dead letters to be), and writes back the
states it changed.  A batch flows through the stages of :mod:`fusionrec.pipeline`:

    resolve person → gather state → reject (duplicate, out of order, unknown item) → learn the event
    (state, statistics, a sampled training example) → fuse a request → candidates from the index →
    score → policy → explain

Learning is test-then-train: a training example is the person as of just before the event, scored
with the statistics published before it; the ranker reads the model published at the start of the
batch (``learner.maybe_publish``), so one batch is ranked with one model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, ItemDelete, ItemUpsert, RecItem
from fusionrec.fusion import FusionParams
from fusionrec.items import IndexFactory, ItemStore
from fusionrec.learner import OnlineLearner, persistence
from fusionrec.learner.sequence import SequenceModel
from fusionrec.pipeline.candidates import CandidateSizes, NewBlock, find_candidates
from fusionrec.pipeline.precision import resolve_precision
from fusionrec.pipeline.choose import choose
from fusionrec.pipeline.explain import explain
from fusionrec.pipeline.gather import BatchState
from fusionrec.pipeline.requests import Fuser, Moment, RequestBatch, context_matrix
from fusionrec.pipeline.resolve import Identity
from fusionrec.pipeline.update import Rejection, Updater
from fusionrec.policy.context import EventContext, parse_context
from fusionrec.policy.ranker import PolicyRanker
from fusionrec.protocols import ItemEncoderT
from fusionrec.state import PersonState

SEQUENCE_FILE = "sequence.npz"  # the served sequence network, in a checkpoint's model directory

__all__ = ["Identity", "Rejection", "Outcome", "Recommender", "StateStore", "DictStates", "CoreHooks", "ItemChanges", "plan_item_changes", "RequestBatch"]

Vector = npt.NDArray[np.float32]


class StateStore(Protocol):
    """Where packed person states live (the worker's per-partition stores, the evaluator's dict)."""

    def get(self, person: str) -> bytes | None: ...

    def put(self, person: str, raw: bytes) -> None: ...


class DictStates(dict[str, bytes]):
    """A :class:`StateStore` in a dict (the evaluator, tests)."""

    def put(self, person: str, raw: bytes) -> None:
        self[person] = raw

    def state(self, person: str) -> PersonState | None:
        raw = self.get(person)
        return PersonState.from_bytes(person, raw) if raw is not None else None


class CoreHooks:
    """What the core reports while it works (no-ops here; ``stream.metrics`` turns them into metrics)."""

    def on_encode(self, texts: int, seconds: float) -> None: ...

    def on_index(self, op: str, seconds: float) -> None: ...

    def on_rank(self, requests: int, seconds: float) -> None: ...

    def on_checkpoint(self) -> None: ...


@dataclass(slots=True)
class Outcome:
    """The answer to one event: the person it was credited to and the fresh top-K (wire-shaped dicts)."""

    position: int  # index of the event in the batch given to ``process``
    event: BehaviorEvent
    person_id: str
    items: list[dict[str, Any]]  # RecItem fields, ready to encode
    variant: str | None = None  # the person's A/B variant (None without an experiment)
    replayed: bool = False  # a duplicate answered again (not learned): see ``Recommender.process``

    def rec_items(self) -> tuple[RecItem, ...]:
        return tuple(RecItem(**item) for item in self.items)


@dataclass(frozen=True, slots=True)
class ItemChanges:
    upserts: list[ItemUpsert]
    deletes: list[str]


def plan_item_changes(messages: Sequence[ItemUpsert | ItemDelete]) -> ItemChanges:
    """Collapse a batch of catalog messages to the last change of each item."""
    latest: dict[str, ItemUpsert | ItemDelete] = {}
    for msg in messages:
        latest.pop(msg.item_id, None)
        latest[msg.item_id] = msg
    return ItemChanges(
        upserts=[m for m in latest.values() if isinstance(m, ItemUpsert)],
        deletes=[m.item_id for m in latest.values() if isinstance(m, ItemDelete)],
    )


def context_of(event: BehaviorEvent) -> EventContext | None:
    """The event's typed context (validated when the event was decoded, so it parses here)."""
    return parse_context(event.context) if event.context else None


class Recommender:
    """Learns person profiles from events and ranks catalog items for them (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        encoder: ItemEncoderT,
        index_factory: IndexFactory | None,
        *,
        model_version: str | None = None,
        restrict_to_target_platform: bool = False,
        hooks: CoreHooks | None = None,
    ) -> None:
        self.cfg = cfg
        self.encoder = encoder
        self.hooks = hooks or CoreHooks()
        self.store = ItemStore(encoder.dim, index_factory)
        self.identity = Identity()
        m = cfg.model
        self.params = FusionParams(
            half_life_s=m.half_life_days * 86400.0,
            platform_weights=dict(m.platform_weights),
            same_platform_boost=m.same_platform_boost,
            max_consumed=m.max_consumed,
            max_recent_events=m.max_recent_events,
        )
        self.model_version = model_version or f"fusion-v2-{cfg.digest()}"
        self.learner = OnlineLearner(
            self.store,
            publish_every=m.learn_publish_every,
            train_every=m.train_every,
            max_examples=m.train_max_per_batch,
            cooc_neighbours=m.cooc_neighbours,
        )
        self.policy = PolicyRanker(cfg.policy, cfg.platforms)
        self.sizes = CandidateSizes(m.text_candidates, m.cooc_candidates, m.popular_candidates, max(cfg.worker.top_k, 10))
        self.platforms = tuple(cfg.platforms)
        self.fuser = Fuser(self.store, self.learner.context, self.params, self.platforms, restrict_to_target_platform=restrict_to_target_platform)
        self.updater = Updater(self.store, self.learner, self.fuser, self.params, cfg.limits, m.event_weights)
        self._new_blocks: dict[str, NewBlock] = {}
        self.exact_precision = resolve_precision(m.exact_precision)  # "auto" settled once, for reports too

    @property
    def restrict_to_target_platform(self) -> bool:
        return self.fuser.restrict

    @restrict_to_target_platform.setter
    def restrict_to_target_platform(self, value: bool) -> None:
        self.fuser.restrict = value

    # --- learned parameters -------------------------------------------------------------------------

    def checkpoint_state(self) -> persistence.Captured:
        """Copies of the learned parameters (fast: call on the event loop, then :meth:`write_checkpoint`)."""
        return persistence.capture(self.learner)

    def write_checkpoint(self, directory: str, state: persistence.Captured) -> None:
        """Write what :meth:`checkpoint_state` captured (slow: safe in a thread)."""
        tensors, meta = persistence.to_tensors(state)
        manifest = {"model_version": self.model_version, "config_digest": self.cfg.digest(), "learned_events": int(meta["learned"]), "version": int(meta["version"])}
        if state.sequence is not None:
            manifest["sequence_model_version"] = state.sequence.version
        persistence.write(directory, tensors, meta, manifest)
        if state.sequence is not None:  # the network the ranker learned its seq weight with
            state.sequence.save(Path(directory) / SEQUENCE_FILE)
        self.hooks.on_checkpoint()

    def save_checkpoint(self, directory: str) -> None:
        self.write_checkpoint(directory, self.checkpoint_state())

    def load_checkpoint(self, directory: str) -> None:
        """The learned parameters (the sequence network a checkpoint holds: :meth:`checkpointed_sequence_model`)."""
        persistence.load_state_dict(self.learner, *persistence.read(directory))

    @staticmethod
    def checkpointed_sequence_model(directory: str) -> SequenceModel | None:
        """The sequence network served when the checkpoint was taken; None when none was."""
        path = Path(directory) / SEQUENCE_FILE
        return SequenceModel.load(path) if path.exists() else None

    def install_sequence_model(self, model: SequenceModel | None) -> None:
        """Serve the learned sequence model's feature (``seq``) from the next batch on; ``None`` removes
        it.  Its weight in the ranker is learned online from then on (0 before: nothing changes)."""
        self.fuser.sequence = self.learner.sequence = None if model is None else model.aligned(self.platforms)

    @property
    def sequence_model(self) -> SequenceModel | None:
        return self.fuser.sequence

    # --- catalog ------------------------------------------------------------------------------------

    def apply_items(self, messages: Sequence[ItemUpsert | ItemDelete]) -> None:
        """Apply catalog changes in order; upserts are encoded in one batch."""
        changes = plan_item_changes(messages)
        self.apply_item_changes(changes, self.encode_item_changes(changes))

    def encode_item_changes(self, changes: ItemChanges) -> Vector:
        """The slow half (the encoder), safe to run off the event loop: it touches no shared state."""
        start = time.perf_counter()
        vectors = self.encoder.encode_items(changes.upserts)
        self.hooks.on_encode(len(changes.upserts), time.perf_counter() - start)
        return vectors

    def apply_item_changes(self, changes: ItemChanges, vectors: Vector) -> None:
        if changes.deletes:
            start = time.perf_counter()
            self.store.delete(changes.deletes)
            self.hooks.on_index("delete", time.perf_counter() - start)
        if changes.upserts:
            start = time.perf_counter()
            self.store.upsert([m.item_id for m in changes.upserts], [m.platform for m in changes.upserts], vectors)
            self.hooks.on_index("upsert", time.perf_counter() - start)

    # --- events -------------------------------------------------------------------------------------

    def gather(self, persons: Sequence[str], states: StateStore) -> BatchState:
        unique = list(dict.fromkeys(persons))
        return BatchState(self.platforms, self.store.dim, unique, [states.get(p) for p in unique])

    def process(self, events: Sequence[BehaviorEvent], states: StateStore, *, rank: bool = True) -> tuple[list[Outcome], list[Rejection]]:
        """Learn a micro-batch of events in order and rank fresh items for each accepted one.

        A ``duplicate`` (an event id the person's state already holds) is rejected, so it never
        changes the state twice, and with ``rank=True`` it is also answered again (an ``Outcome``
        with ``replayed=True``): after a crash, events replayed from the last committed offsets may
        already be in the state while their recommendation never reached the broker.
        ``rank=False`` learns only (the offline evaluator replays history that way).
        """
        self.learner.maybe_publish()  # a batch is ranked with one published model
        persons = [self.identity.person_of(e) for e in events]
        contexts = [context_of(e) if e.context else None for e in events]
        bs = self.gather(persons, states)
        rejections, dirty, requests, answer = self.updater.apply(events, persons, contexts, bs, rank=rank)
        for i, raw in zip(dirty, bs.pack(dirty)):
            states.put(bs.persons[i], raw)
        self.learner.train()
        if requests is None or not len(requests):
            return [], rejections
        ranked = self.rank(requests)
        outcomes = [
            Outcome(position, events[position], person, items, variant, replayed)
            for position, replayed, person, (items, variant) in zip(answer.positions, answer.replayed, requests.person, ranked)
        ]
        outcomes.sort(key=lambda o: o.position)
        return outcomes, rejections

    def requests_for(
        self, states: StateStore, persons: Sequence[str], platforms: Sequence[str], now: Sequence[float], event_ids: Sequence[str] | None = None
    ) -> RequestBatch:
        """Requests of people as they are, without any event (the evaluator ranks targets so); a
        person nothing is known of has ``known`` False and gets an empty list."""
        bs = self.gather(persons, states)
        where = {p: j for j, p in enumerate(self.platforms)}
        who = np.fromiter((bs.index[p] for p in persons), np.int64, len(persons))
        target = np.fromiter((where[p] for p in platforms), np.int64, len(persons))
        ids = list(event_ids) if event_ids is not None else [""] * len(persons)
        moment = Moment.of(bs, who, target, np.asarray(now, np.float64))
        seqs = [self.fuser.seq_rows(bs, i, p) for i, p in zip(who.tolist(), platforms)]
        recent = [self.fuser.recent_rows(bs, i) for i in who.tolist()]
        consumed = [self.fuser.consumed_rows(bs, i, p) for i, p in zip(who.tolist(), platforms)]
        x = context_matrix([None] * len(persons))
        journeys = [self.fuser.journey(bs, i) for i in who.tolist()]
        return self.fuser.requests(bs, moment, x, seqs, recent, ids, [""] * len(persons), consumed, None, journeys)

    # --- ranking ------------------------------------------------------------------------------------

    def rank(self, requests: RequestBatch, k: int | None = None) -> list[tuple[list[dict[str, Any]], str | None]]:
        """Per request: its published top-``k`` (RecItem-shaped dicts) and the person's variant."""
        k = k or self.cfg.worker.top_k
        out: list[tuple[list[dict[str, Any]], str | None]] = [([], None)] * len(requests)
        groups: dict[str, list[int]] = {}
        for n, (t, known) in enumerate(zip(requests.platform.tolist(), requests.known.tolist())):
            platform = self.platforms[t]
            if known and platform in self.store.platforms:
                groups.setdefault(platform, []).append(n)
        if any(p not in self.learner.model.platforms for p in groups):
            self.learner.publish()  # a platform whose first items came after the last publication
        start = time.perf_counter()
        for platform, members in groups.items():
            reqs = requests.take(members)
            variants = [self.policy.arm(person, platform).variant for person in reqs.person]
            for n, listed, variant in zip(members, self._rank_platform(platform, reqs, k), variants):
                out[n] = (listed, variant)
        self.hooks.on_rank(len(requests), time.perf_counter() - start)
        return out

    def _rank_platform(self, platform: str, reqs: RequestBatch, k: int) -> list[list[dict[str, Any]]]:
        model = self.learner.model.platforms[platform]
        items = self.store.platforms[platform]
        if items.live == 0:
            return [[] for _ in range(len(reqs))]
        wants_new = any(self.policy.arm(p, platform).new_item_position > 0 for p in reqs.person[:1]) or self.policy.any_new_slot
        start = time.perf_counter()
        block = self._new_blocks.setdefault(platform, NewBlock(self.exact_precision))
        seq_ids = None if self.fuser.sequence is None else self.fuser.sequence.id_table(platform)
        cands = find_candidates(
            model, items, reqs, self.sizes, new_slot=wants_new, new_block=block, catalog_version=self.store.version,
            exact_max=self.cfg.model.index_exact_max, seq_ids=seq_ids,
        )  # fmt: skip
        self.hooks.on_index("search", time.perf_counter() - start)
        chosen = choose(cands, reqs, model, items.vectors, self.policy, k, platform)
        return explain(chosen, reqs, self.store, platform, self.platforms)

    def rank_ids(self, requests: RequestBatch, k: int | None = None) -> list[list[str]]:
        """Item ids only (the evaluator)."""
        return [[i["item_id"] for i in listed] for listed, _ in self.rank(requests, k)]


def now_ms() -> int:
    return int(time.time() * 1000)




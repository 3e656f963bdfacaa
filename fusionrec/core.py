"""The processing core: the same code path in the stream workers and in the offline evaluator.

It knows nothing of Kafka.  The worker hands it micro-batches of decoded events plus a way to read
and write person state; it returns recommendations and rejections (dead letters to be).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, IdentityLink, ItemDelete, ItemUpsert, RecItem
from fusionrec.fusion import FusionParams, PersonState, event_weight, learn, mix_vector, platform_mix
from fusionrec.fusion import Vector
from fusionrec.learning import OnlineLearner, RankRequest
from fusionrec.policy.context import EventContext, parse_context
from fusionrec.policy.exploration import Pick
from fusionrec.policy.ranker import PolicyRanker
from fusionrec.protocols import TextEncoderT, VectorIndexT

__all__ = ["Identity", "Rejection", "Outcome", "Recommender", "item_text_of"]


class Identity:
    """Platform user id → person id, from identity links; unlinked users are their own person."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], str] = {}

    def link(self, link: IdentityLink) -> None:
        self._links[(link.platform, link.user_id)] = link.person_id

    def person_of(self, event: BehaviorEvent) -> str:
        if event.person_id:
            return event.person_id
        return self._links.get((event.platform, event.user_id), f"{event.platform}:{event.user_id}")

    def __len__(self) -> int:
        return len(self._links)


@dataclass(frozen=True, slots=True)
class Rejection:
    position: int  # index of the event in the batch given to ``process``
    event: BehaviorEvent
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result for one accepted event: the person it was credited to and the fresh top-K."""

    position: int  # index of the event in the batch given to ``process``
    event: BehaviorEvent
    person_id: str
    items: tuple[RecItem, ...]
    variant: str | None = None  # the person's A/B variant (None without an experiment)
    replayed: bool = False  # a duplicate answered again (not learned): see ``Recommender.process``


def context_of(event: BehaviorEvent) -> EventContext | None:
    """The event's typed context (validated when the event was decoded, so it parses here)."""
    return parse_context(event.context) if event.context else None


def item_text_of(item: ItemUpsert) -> str:
    from encoder.templates import item_text  # the text template lives with the encoder

    return item_text(item.title, item.text, item.platform, item.categories)


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


class Recommender:
    """Learns person profiles from events and ranks catalog items for them.

    ``process`` is the streaming entry point: for each event, in order, it rejects what breaks a
    stateful rule (duplicate, out of order, unknown item), learns the rest, and then ranks items of the
    event's platform for the person with one batched index search.
    """

    def __init__(
        self,
        cfg: Config,
        encoder: TextEncoderT,
        index: VectorIndexT,
        *,
        model_version: str | None = None,
        restrict_to_target_platform: bool = False,
    ):
        self.cfg = cfg
        self.encoder = encoder
        self.index = index
        self.identity = Identity()
        self.params = FusionParams(
            half_life_s=cfg.model.half_life_days * 86400.0,
            platform_weights=dict(cfg.model.platform_weights),
            same_platform_boost=cfg.model.same_platform_boost,
            max_consumed=cfg.model.max_consumed,
            max_recent_events=cfg.model.max_recent_events,
        )
        self.model_version = model_version or f"fusion-v1-{cfg.digest()}"
        self.learner = OnlineLearner(encoder.dim, publish_every=cfg.model.learn_publish_every)
        self.policy = PolicyRanker(cfg.policy, cfg.platforms)
        # ranking uses only the target platform's own history (the evaluator's ablation of fusion)
        self.restrict_to_target_platform = restrict_to_target_platform

    # --- learned parameters -------------------------------------------------------------------------

    def save_checkpoint(self, directory: str) -> None:
        """The online-learned global parameters (safetensors) and a manifest naming the model."""
        self.learner.save_checkpoint(directory, {"model_version": self.model_version, "config_digest": self.cfg.digest()})

    def load_checkpoint(self, directory: str) -> None:
        self.learner.load_checkpoint(directory)

    # --- catalog ------------------------------------------------------------------------------------

    def apply_items(self, messages: Sequence[ItemUpsert | ItemDelete]) -> None:
        """Apply catalog changes in order; upserts are encoded in one batch."""
        changes = plan_item_changes(messages)
        self.apply_item_changes(changes, self.encode_item_changes(changes))

    def encode_item_changes(self, changes: ItemChanges) -> Vector:
        """The slow half (the encoder), safe to run off the event loop: it touches no shared state."""
        return self.encoder.encode([item_text_of(m) for m in changes.upserts])

    def apply_item_changes(self, changes: ItemChanges, vectors: Vector) -> None:
        if changes.deletes:
            self.index.delete(changes.deletes)
            self.learner.catalog.delete(changes.deletes)
        if changes.upserts:
            ids, platforms = [m.item_id for m in changes.upserts], [m.platform for m in changes.upserts]
            self.index.upsert(ids, platforms, vectors)
            self.learner.catalog.upsert(ids, platforms, np.asarray(vectors, dtype=np.float32))

    # --- events -------------------------------------------------------------------------------------

    def stateful_reject(self, event: BehaviorEvent, state: PersonState) -> tuple[str, str] | None:
        if event.event_id in state.recent_events:
            return "duplicate", f"event_id {event.event_id!r} was already applied"
        if event.ts < state.last_ts - self.cfg.limits.allowed_lateness_s:
            return "out_of_order", f"ts={event.ts} is older than the person's newest event ({state.last_ts}) beyond the allowed lateness"
        if event.item_id not in self.index:
            return "unknown_item", f"item {event.item_id!r} is not in the catalog"
        if (owner := self.index.platform_of(event.item_id)) != event.platform:
            # else it is learned into the wrong profile, and if the event's platform has no items yet the
            # whole batch's search raises IndexNotReady
            return "unknown_item", f"item {event.item_id!r} is in the catalog of {owner!r}, not {event.platform!r}"
        return None

    def learn_event(self, state: PersonState, event: BehaviorEvent, vector: Vector) -> None:
        """Test-then-train the global learner on the event, then fold it into the person's state."""
        weight = event_weight(event.event_type, event.value, self.cfg.model.event_weights)
        ctx = context_of(event)
        base = self.mix(state, event.platform, event.ts, gated=False)
        mix = self.gated(base, event.platform, ctx)
        self.learner.observe(self.request(state, event.platform, event.ts, mix=mix), event.item_id, event.ts, weight > 0)
        if weight > 0 and len(base) > 1:
            cosines = {name: float(direction @ vector) for name, (_, direction) in base.items()}
            self.learner.context.learn(event.platform, ctx, {n: a for n, (a, _) in base.items()}, cosines)
        learn(
            state,
            platform=event.platform,
            item_id=event.item_id,
            vector=vector,
            weight=weight,
            ts=event.ts,
            params=self.params,
            event_id=event.event_id,
        )

    def process(
        self,
        events: Sequence[BehaviorEvent],
        load: Callable[[str], PersonState | None],
        save: Callable[[str, PersonState], None],
        *,
        rank: bool = True,
    ) -> tuple[list[Outcome], list[Rejection]]:
        """Learn a micro-batch of events in order and rank fresh items for each accepted one.

        A ``duplicate`` (an event id the person's state already holds) is rejected, so it never
        changes the state twice, and with ``rank=True`` it is also answered again (an ``Outcome``
        with ``replayed=True``): after a crash, events replayed from the last committed offsets may
        already be in the state while their recommendation never reached the broker.
        ``rank=False`` learns only (the offline evaluator replays history that way).
        """
        self.learner.maybe_publish()  # a batch is ranked with one published model
        rejections: list[Rejection] = []
        pending: list[Pending] = []
        states: dict[str, PersonState] = {}
        known = list({e.item_id for e in events if e.item_id in self.index})
        item_vectors = dict(zip(known, self.index.vectors_of(known))) if known else {}
        for position, event in enumerate(events):
            person = self.identity.person_of(event)
            state = states.get(person) or load(person) or PersonState.new(person)
            states[person] = state
            rejected = self.stateful_reject(event, state)
            if rejected:
                rejections.append(Rejection(position, event, *rejected))
                if rank and rejected[0] == "duplicate" and event.item_id in item_vectors:
                    fallback = item_vectors[event.item_id]
                    pending.append(self.snapshot(position, event, person, state, fallback=fallback, replayed=True))
                continue
            self.learn_event(state, event, item_vectors[event.item_id])
            if not rank:
                continue
            # a person with no positive history yet is served items like the one just touched
            pending.append(self.snapshot(position, event, person, state, fallback=item_vectors[event.item_id]))
        for person, state in states.items():
            save(person, state)
        picks, variants = self.choose([p.request for p in pending], [(p.person_id, p.event.event_id) for p in pending])
        ranked = [[(pk.item_id, pk.score) for pk in picked] for picked in picks]
        outcomes = []
        for p, items, picked, variant in zip(pending, self.explain_many(pending, ranked), picks, variants):
            items = tuple(dataclasses.replace(i, explored=True) if pk.explored else i for i, pk in zip(items, picked))
            outcomes.append(Outcome(p.position, p.event, p.person_id, items, variant, p.replayed))
        return outcomes, rejections

    def choose(
        self, requests: Sequence[RankRequest], who: Sequence[tuple[str, str]], k: int | None = None
    ) -> tuple[list[list[Pick]], list[str | None]]:
        """The published top-``k`` per request under the ranking policy, and each person's variant.

        ``who[i]`` is ``(person id, event id)`` of request ``i``: the variant and the exploration draws
        are functions of them (and the seed), so a replayed event gets the same list.
        """
        k = k or self.cfg.worker.top_k
        arms = [self.policy.arm(person, req.platform) for req, (person, _) in zip(requests, who)]
        candidates = self.learner.rank(requests, self.policy.fetch(k, arms), new_items=self.policy.new_items(arms))
        picks = [
            self.policy.with_new_item(
                arm,
                self.policy.choose(
                    arm,
                    cands,
                    k,
                    person_id=person,
                    event_id=event_id,
                    platform=req.platform,
                    consumed=req.consumed,
                    vectors=self.index.vectors_of,
                    counts=self.learner.interaction_counts,
                ),
                cands,
                k,
                platform=req.platform,
                consumed=req.consumed,
                is_new=self.learner.is_new,
            )
            for arm, cands, req, (person, event_id) in zip(arms, candidates, requests, who)
        ]
        return picks, [arm.variant for arm in arms]

    def snapshot(
        self, position: int, event: BehaviorEvent, person: str, state: PersonState, *, fallback: Vector, replayed: bool = False
    ) -> Pending:
        """Freeze what ranking and explaining need, as of this event (later events may change the state)."""
        mix = self.mix(state, event.platform, event.ts, context_of(event))
        query = mix_vector(mix)
        recent = {name: tuple(state.profiles[name].recent) for name in mix}
        request = self.request(state, event.platform, event.ts, mix=mix, fallback=fallback)
        query = query if query is not None else fallback
        return Pending(position, event, person, query, request.consumed, mix, recent, request, replayed)

    # --- ranking ------------------------------------------------------------------------------------

    def mix(
        self, state: PersonState, platform: str, now: float, ctx: EventContext | None = None, *, gated: bool = True
    ) -> dict[str, tuple[float, Vector]]:
        """Each platform profile's fusion weight and direction for ranking ``platform`` as of ``now``;
        the weights are modulated by the event's context through the learned gate unless ``gated=False``."""
        mix = platform_mix(state, platform, now, self.params)
        if self.restrict_to_target_platform:
            mix = {name: m for name, m in mix.items() if name == platform}
        return self.gated(mix, platform, ctx) if gated else mix

    def gated(self, mix: dict[str, tuple[float, Vector]], platform: str, ctx: EventContext | None) -> dict[str, tuple[float, Vector]]:
        if len(mix) < 2:
            return mix
        weights = self.learner.context.gate(platform, ctx, {name: alpha for name, (alpha, _) in mix.items()})
        return {name: (weights[name], direction) for name, (_, direction) in mix.items()}

    def request(
        self,
        state: PersonState,
        platform: str,
        now: float,
        *,
        mix: dict[str, tuple[float, Vector]] | None = None,
        fallback: Vector | None = None,
    ) -> RankRequest:
        """What the learner needs to rank ``platform`` for this person as of ``now`` (a frozen copy)."""
        mix = self.mix(state, platform, now) if mix is None else mix
        fused = mix_vector(mix)
        own = mix_vector({platform: mix[platform]}) if platform in mix else None
        # the sequence features (last item, co-occurrence) read the target platform's items only:
        # other platforms' items co-occur with the target's far more loosely and drowned the signal
        # (measured: amazon-arts-office NDCG@10 0.045 with them, 0.057 without); the other platforms
        # reach the ranking through the fused profile instead
        seq = tuple(i for i in state.seq if self.index.platform_of(i) == platform)
        return RankRequest(platform, fused if fused is not None else fallback, own, seq, frozenset(state.consumed))

    def rank_requests(self, requests: Sequence[RankRequest], k: int | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` (default top_k) ``(item_id, score)`` per request, excluding consumed items."""
        return self.learner.rank(requests, k or self.cfg.worker.top_k)

    def rank(self, state: PersonState, platform: str, now: float, k: int | None = None) -> list[tuple[str, float]]:
        """Top-K of ``platform`` for a person as of ``now`` (used by the evaluator: rank, then learn)."""
        request = self.request(state, platform, now)
        if request.fused is None:
            return []
        return self.rank_requests([request], k)[0]

    def explain_many(self, pending: Sequence[Pending], ranked: Sequence[list[tuple[str, float]]]) -> list[tuple[RecItem, ...]]:
        """For each recommended item: the platform profile and the past items that pulled it up most.

        Vectorised over the whole batch (events × items × platforms × recent items) so that the
        per-event Python work is only building the messages.
        """
        if not pending:
            return []
        batch = ExplainBatch.build(pending, ranked, self.index)
        contributions, best, top = batch.scores()
        out: list[tuple[RecItem, ...]] = []
        for b, (p, items) in enumerate(zip(pending, ranked)):
            if not batch.names[b]:
                reason = {"kind": "similar_to_last_item", "platform": p.event.platform, "because_of": [p.event.item_id]}
                out.append(tuple(RecItem(i, round(s, 6), p.event.platform, reason) for i, s in items))
                continue
            recs = []
            for k, (item_id, score) in enumerate(items):
                j = int(best[b, k])
                name = batch.names[b][j]
                reason = {
                    "kind": "similar_to_history",
                    "platform": name,
                    "contribution": round(float(contributions[b, k, j]), 4),
                }
                recent = batch.recent[b][j]
                because = [recent[r] for r in top[b, k] if r < len(recent)]
                if because:
                    reason["because_of"] = because
                recs.append(RecItem(item_id=item_id, score=round(score, 6), platform=p.event.platform, reason=reason))
            out.append(tuple(recs))
        return out


@dataclass
class ExplainBatch:
    """Padded arrays for explaining a batch: rec vectors, platform directions, recent-item vectors."""

    names: list[list[str]]
    recent: list[list[list[str]]]
    rec_vectors: Vector  # (B, K, d)
    directions: Vector  # (B, P, d)
    alphas: Vector  # (B, P), 0 for padding
    recent_vectors: Vector  # (B, P, R, d)
    recent_mask: npt.NDArray[np.bool_]  # (B, P, R)

    @classmethod
    def build(cls, pending: Sequence[Pending], ranked: Sequence[list[tuple[str, float]]], index: VectorIndexT) -> ExplainBatch:
        names = [list(p.mix) for p in pending]
        recent = [[[r for r in p.recent[n] if r in index] for n in names_b] for p, names_b in zip(pending, names)]
        n_b, n_k = len(pending), max((len(r) for r in ranked), default=0)
        n_p = max((len(n) for n in names), default=0) or 1
        n_r = max((len(r) for rb in recent for r in rb), default=0) or 1
        ids: dict[str, int] = {"": 0}  # row 0 of the matrix is padding
        rec_rows = np.zeros((n_b, max(n_k, 1)), dtype=np.int64)
        recent_rows = np.zeros((n_b, n_p, n_r), dtype=np.int64)
        for b, items in enumerate(ranked):
            for k, (item_id, _) in enumerate(items):
                rec_rows[b, k] = ids.setdefault(item_id, len(ids))
            for j, rs in enumerate(recent[b]):
                for r, item_id in enumerate(rs):
                    recent_rows[b, j, r] = ids.setdefault(item_id, len(ids))
        dim = index.dim
        matrix = np.zeros((len(ids), dim), dtype=np.float32)
        if len(ids) > 1:
            matrix[1:] = index.vectors_of(list(ids)[1:])
        directions = np.zeros((n_b, n_p, dim), dtype=np.float32)
        alphas = np.zeros((n_b, n_p), dtype=np.float32)
        for b, p in enumerate(pending):
            for j, name in enumerate(names[b]):
                alphas[b, j], directions[b, j] = p.mix[name]
        return cls(names, recent, matrix[rec_rows], directions, alphas, matrix[recent_rows], recent_rows > 0)

    def scores(self) -> tuple[Vector, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per (event, item): contribution of each platform, the best platform, its top-3 recent items."""
        contributions = np.matmul(self.rec_vectors, self.directions.transpose(0, 2, 1)) * self.alphas[:, None, :]
        # mask only the padding (all-zero directions): a real platform may have alpha <= 0 (a platform
        # weight of 0 or below), and masking it gave a -inf contribution, sent as null
        real = np.any(self.directions != 0, axis=2)  # (B, P)
        contributions = np.where(real[:, None, :], contributions, -np.inf)
        best = contributions.argmax(axis=2)  # (B, K)
        n_b, n_p, n_r, dim = self.recent_vectors.shape
        flat = self.recent_vectors.reshape(n_b, n_p * n_r, dim)
        sims = np.matmul(self.rec_vectors, flat.transpose(0, 2, 1)).reshape(n_b, -1, n_p, n_r)
        chosen = np.take_along_axis(sims, best[:, :, None, None], axis=2)[:, :, 0, :]  # (B, K, R)
        mask = np.take_along_axis(self.recent_mask[:, None, :, :], best[:, :, None, None], axis=2)[:, :, 0, :]
        chosen = np.where(mask, chosen, -np.inf)
        top = np.argsort(-chosen, axis=2, kind="stable")[:, :, :3]
        top = np.where(np.take_along_axis(mask, top, axis=2), top, n_r)  # n_r marks "no item"
        return contributions, best, top


@dataclass(frozen=True, slots=True)
class Pending:
    """An event waiting for its ranking (accepted, or a duplicate answered again), with the person's profile frozen then."""

    position: int
    event: BehaviorEvent
    person_id: str
    query: Vector
    consumed: frozenset[str]
    mix: dict[str, tuple[float, Vector]]
    recent: dict[str, tuple[str, ...]]
    request: RankRequest
    replayed: bool = False  # a duplicate answered again


def now_ms() -> int:
    return int(time.time() * 1000)

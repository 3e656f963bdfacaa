"""Apply a micro-batch of events to the people it touches: reject, learn, fold in, snapshot.

Events of one person must be applied in order, events of different people need not: the batch is
cut into waves (wave ``k`` holds the ``k``-th event of every person), and each wave is applied with
array math over its events.  Per event only the checks and the short hash lists are Python.

For every accepted event, in this order:

1. test-then-train: a positive event is recorded in the interaction statistics with the person's
   earlier items, and every ``train_every``-th one becomes a training example frozen as the person was
   just before it; the context gate takes a step towards the platforms whose profile was closest to
   the chosen item;
2. the event is folded into the person's profile on its platform (decay, weight, float16 rounding);
3. with ranking on, the person as of just after the event is snapshot into a request.

A duplicate (an event id the person already holds) changes nothing; with ranking on it is still
answered, from the person as they are (after a crash its recommendation may never have been sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusionrec.config import LimitsConfig
from fusionrec.contracts import BehaviorEvent
from fusionrec.fusion import RECENT_PER_PLATFORM, SEQUENCE_LENGTH, FusionParams, event_weight
from fusionrec.hashing import stable_hash
from fusionrec.items import ItemStore
from fusionrec.learner import Example, OnlineLearner
from fusionrec.pipeline.gather import BatchState
from fusionrec.pipeline.requests import Fuser, Moment, RequestBatch, context_matrix
from fusionrec.policy.context import EventContext
from fusionrec.state import remember

__all__ = ["Rejection", "Updater"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Rejection:
    position: int  # index of the event in the batch given to ``process``
    event: BehaviorEvent
    reason: str
    detail: str


@dataclass
class Answer:
    """Which requests of the snapshots answer which events (position in the batch, replayed or not)."""

    positions: list[int]
    replayed: list[bool]


@dataclass
class _Positives:
    """A wave's positive events, the people as they were just before them (gate and examples)."""

    before: Moment
    x: npt.NDArray[np.float64]
    vectors: F32
    seqs: list[list[int]]
    examples: list[tuple[int, Example]]  # (index in this wave's positives, example to fill)


@dataclass
class _Consumed:
    """One person's consumed rows of one platform during a batch: they only grow (an item dropped from
    the bounded hash list stays consumed until the batch ends), so the sorted array a snapshot takes is
    the previous one with the new rows inserted — one small copy where a person has many events in the
    batch and a long history (MovieLens: up to 1,000 rows, rebuilt and sorted at every event before)."""

    rows: list[int]
    members: set[int]
    _sorted: npt.NDArray[np.int64] | None = None

    def sorted_rows(self) -> npt.NDArray[np.int64]:
        """Every row so far, sorted; a new array whenever rows were added (snapshots keep the old one)."""
        done = self._sorted
        if done is not None and len(done) == len(self.rows):
            return done
        if done is not None and len(done) == len(self.rows) - 1:
            row = self.rows[-1]
            at = int(done.searchsorted(row))
            done = np.concatenate((done[:at], np.array([row], np.int64), done[at:]))
        else:
            done = np.array(self.rows, np.int64)
            done.sort()
        self._sorted = done
        return done


@dataclass
class _Snapshots:
    """Everything a request needs that later waves would change, captured wave by wave; the fusion
    itself (array math with a fixed cost per call) is done once for the whole batch."""

    moments: list[Moment]
    x: list[npt.NDArray[np.float64]]
    seqs: list[list[int]]
    recent: list[list[list[int]]]
    consumed: list[npt.NDArray[np.int64]]
    event_ids: list[str]
    touched: list[str]
    journeys: list[list[int]]


class Updater:
    def __init__(
        self,
        store: ItemStore,
        learner: OnlineLearner,
        fuser: Fuser,
        params: FusionParams,
        limits: LimitsConfig,
        event_weights: Mapping[str, float],
    ) -> None:
        self.store = store
        self.learner = learner
        self.fuser = fuser
        self.params = params
        self.limits = limits
        self.event_weights = event_weights
        self.where = {p: j for j, p in enumerate(fuser.platforms)}

    def apply(
        self,
        events: Sequence[BehaviorEvent],
        persons: Sequence[str],
        contexts: Sequence[EventContext | None],
        bs: BatchState,
        *,
        rank: bool,
    ) -> tuple[list[Rejection], list[int], RequestBatch | None, Answer]:
        """Returns the rejections, the rows of ``bs`` that changed, the requests and whom they answer."""
        rejections: list[Rejection] = []
        dirty: set[int] = set()
        self._consumed: dict[tuple[int, int], _Consumed] = {}
        self._positives: list[_Positives] = []
        snaps = _Snapshots([], [], [], [], [], [], [], [])
        answer = Answer([], [])
        waves: list[list[int]] = []
        seen: dict[str, int] = {}
        for position, person in enumerate(persons):
            k = seen.get(person, 0)
            seen[person] = k + 1
            if k == len(waves):
                waves.append([])
            waves[k].append(position)
        for wave in waves:
            accepted, answered = self._check(events, persons, wave, bs, rejections, rank)
            if accepted:
                self._learn(events, persons, contexts, accepted, bs)
                dirty.update(bs.index[persons[p]] for p, *_ in accepted)
            if rank:
                self._snapshot(events, persons, contexts, accepted, answered, bs, snaps, answer)
        self._learn_from_positives()
        requests = self._requests(bs, snaps) if rank else None
        return rejections, sorted(dirty), requests, answer

    # ------------------------------------------------------------------------------ checks

    def _check(
        self, events: Sequence[BehaviorEvent], persons: Sequence[str], wave: list[int], bs: BatchState, rejections: list[Rejection], rank: bool
    ) -> tuple[list[tuple[int, int, int, int]], list[int]]:
        """``(position, platform index, row, event hash)`` of the accepted events; positions of the
        duplicates to answer again."""
        accepted = []
        answered = []
        lateness = self.limits.allowed_lateness_s
        for position in wave:
            e = events[position]
            i = bs.index[persons[position]]
            h = stable_hash(e.event_id)
            reason = None
            if h in bs.events[i]:
                reason = ("duplicate", f"event_id {e.event_id!r} was already applied")
                if rank and e.item_id in self.store:
                    answered.append(position)
            elif e.ts < bs.last_ts[i] - lateness:
                reason = ("out_of_order", f"ts={e.ts} is older than the person's newest event ({bs.last_ts[i]}) beyond the allowed lateness")
            else:
                owner = self.store.platform_of(e.item_id)
                if owner is None:
                    reason = ("unknown_item", f"item {e.item_id!r} is not in the catalog")
                elif owner != e.platform or owner not in self.where:
                    # else it would be learned into the wrong profile
                    reason = ("unknown_item", f"item {e.item_id!r} is in the catalog of {owner!r}, not {e.platform!r}")
                else:
                    accepted.append((position, self.where[owner], self.store.platforms[owner].row_of[e.item_id], h))
            if reason is not None:
                rejections.append(Rejection(position, e, *reason))
        return accepted, answered

    # ------------------------------------------------------------------------------ learning

    def _learn(
        self, events: Sequence[BehaviorEvent], persons: Sequence[str], contexts: Sequence[EventContext | None], accepted: list[tuple[int, int, int, int]], bs: BatchState
    ) -> None:
        platforms = self.fuser.platforms
        n = len(accepted)
        who = np.fromiter((bs.index[persons[p]] for p, *_ in accepted), np.int64, n)
        target = np.fromiter((t for _, t, _, _ in accepted), np.int64, n)
        rows = [r for _, _, r, _ in accepted]
        ts = np.fromiter((events[p].ts for p, *_ in accepted), np.float64, n)
        weight = np.fromiter((event_weight(events[p].event_type, events[p].value, self.event_weights) for p, *_ in accepted), np.float64, n)
        by_platform: dict[int, list[int]] = {}
        for k, (_, t, _, _) in enumerate(accepted):
            by_platform.setdefault(t, []).append(k)
        vectors = np.empty((n, self.store.dim), np.float32)
        hashes = np.empty(n, np.uint64)
        for t, sel in by_platform.items():
            items, at_rows = self.store.platforms[platforms[t]], [rows[s] for s in sel]
            vectors[sel] = items.vectors[at_rows]
            hashes[sel] = items.hashes[at_rows]
        positive = weight > 0
        for k in np.flatnonzero(~positive).tolist():
            self.learner.observe(platforms[int(target[k])], rows[k], float(ts[k]), False, [], None)
        if positive.any():
            self._test_then_train(contexts, accepted, bs, who, target, rows, ts, vectors, positive)
        self._fold(bs, who, target, ts, weight, vectors)
        max_consumed, max_events, consumed = self.params.max_consumed, self.params.max_recent_events, self._consumed
        for (_, t, row, h), i, item, is_positive, at in zip(accepted, who.tolist(), hashes.tolist(), positive.tolist(), ts.tolist()):
            remember(bs.recent[i][t], item, RECENT_PER_PLATFORM)
            remember(bs.consumed[i], item, max_consumed)
            seen = consumed.get((i, t))
            if seen is not None and row not in seen.members:
                seen.rows.append(row)
                seen.members.add(row)
            if is_positive:
                remember(bs.seq[i], item, SEQUENCE_LENGTH)
            remember(bs.events[i], h, max_events)
            if at > bs.last_ts[i]:
                bs.last_ts[i] = at

    def _test_then_train(
        self,
        contexts: Sequence[EventContext | None],
        accepted: list[tuple[int, int, int, int]],
        bs: BatchState,
        who: npt.NDArray[np.int64],
        target: npt.NDArray[np.int64],
        rows: list[int],
        ts: npt.NDArray[np.float64],
        vectors: F32,
        positive: npt.NDArray[np.bool_],
    ) -> None:
        """Statistics now; training examples and the context gate's step from the people as they were
        just before the events, completed once per batch (:meth:`_learn_from_positives`)."""
        platforms = self.fuser.platforms
        pos = np.flatnonzero(positive)
        before = Moment.of(bs, who[pos], target[pos], ts[pos])
        seqs = [self.fuser.seq_rows(bs, int(who[k]), platforms[int(target[k])]) for k in pos.tolist()]
        any_present = self.fuser.present(before).any(axis=1).tolist()
        examples = []
        for j, k in enumerate(pos.tolist()):
            platform = platforms[int(target[k])]
            example = None
            if self.learner.wants_example() and (any_present[j] or seqs[j]):
                example = Example(platform, rows[k], None, None, None, seqs[j], self.fuser.journey(bs, int(who[k])) or None)
                examples.append((j, example))
            self.learner.observe(platform, rows[k], float(ts[k]), True, seqs[j], example)
        x = context_matrix([contexts[accepted[k][0]] for k in pos.tolist()])
        self._positives.append(_Positives(before, x, vectors[pos], seqs, examples))

    def _learn_from_positives(self) -> None:
        """Fill the batch's training examples and take the context gate's step, all waves at once (the
        gate ranks with its published copy, so deferring its step changes no ranking of this batch)."""
        if not self._positives:
            return
        waves = self._positives
        before = Moment.concat([w.before for w in waves])
        x = np.concatenate([w.x for w in waves])
        offsets = np.cumsum([0] + [len(w.before) for w in waves])
        examples = [(int(offsets[n]) + j, e) for n, w in enumerate(waves) for j, e in w.examples]
        seqs = [s for w in waves for s in w.seqs]
        if examples:
            sel = np.array([j for j, _ in examples], np.int64)
            fused, ok, own, last, _, present = self.fuser.vectors(before.take(sel), x[sel], [seqs[j] for j in sel.tolist()])
            has_own = present[np.arange(len(sel)), before.target[sel]]
            for m, (j, example) in enumerate(examples):
                example.fused = fused[m] if ok[m] else None
                example.own = own[m] if has_own[m] else None
                example.last = last[m] if seqs[j] else None
            with_journey = [(m, e) for m, (_, e) in enumerate(examples) if e.journey]
            if with_journey:
                found = self.fuser.seq_queries([e.journey or [] for _, e in with_journey], before.target[sel[[m for m, _ in with_journey]]])
                if found is not None:
                    for q, h, (_, example) in zip(*found, with_journey):
                        example.seq_query, example.seq_hidden = q, h
        alphas, present = self.fuser.alphas(before)
        multi = np.flatnonzero(present.sum(axis=1) >= 2)
        if len(multi):
            vectors = np.concatenate([w.vectors for w in waves])[multi]
            cosines = np.einsum("wpd,wd->wp", before.unit[multi], vectors).astype(np.float64)
            platforms = self.fuser.platforms
            target = before.target[multi]
            for t in np.unique(target).tolist():
                mm = np.flatnonzero(target == t)
                sel = multi[mm]
                self.learner.context.learn_batch(platforms[t], platforms, x[sel], alphas[sel], cosines[mm], present[sel])
        self._positives = []

    def _fold(self, bs: BatchState, who: npt.NDArray[np.int64], target: npt.NDArray[np.int64], ts: npt.NDArray[np.float64], weight: npt.NDArray[np.float64], vectors: F32) -> None:
        """``vec = vec·decay + w·v`` for every event of the wave, stored as float16 direction × float32 length.

        The cells ``(person, platform)`` are addressed by one flat index into views of the columns: a
        wave is often a handful of events (one per person), where numpy's per-call cost is the cost."""
        cell = who * bs.norm.shape[1] + target
        units, units16, norms, masses, times, counts = bs.cells()
        prev_ts = times[cell]
        k = 0.5 ** (np.maximum(ts - prev_ts, 0.0) / self.params.half_life_s)  # 1 unless the event is later
        vec = units[cell] * norms[cell].astype(np.float32)[:, None]
        vec *= k.astype(np.float32)[:, None]
        vec += weight.astype(np.float32)[:, None] * vectors
        norm = np.sqrt(np.einsum("wd,wd->w", vec, vec)).astype(np.float32)
        positive = norm > 0
        rounded = np.where(positive[:, None], vec / np.where(positive, norm, np.float32(1.0))[:, None], 0.0).astype(np.float16)
        units16[cell] = rounded
        units[cell] = rounded
        norms[cell] = norm
        masses[cell] = masses[cell] * k + np.abs(weight)
        times[cell] = np.maximum(prev_ts, ts)
        counts[cell] += 1

    # ------------------------------------------------------------------------------ snapshots

    def _consumed_now(self, bs: BatchState, i: int, t: int) -> npt.NDArray[np.int64]:
        """Rows of platform ``t`` person ``i`` consumed so far (mapped from hashes once per batch, then
        kept up to date as the batch goes on), sorted."""
        entry = self._consumed.get((i, t))
        if entry is None:
            rows = self.store.rows_of_hashes(self.fuser.platforms[t], bs.consumed[i])
            entry = self._consumed[(i, t)] = _Consumed(rows, set(rows))
        return entry.sorted_rows()

    def _snapshot(
        self,
        events: Sequence[BehaviorEvent],
        persons: Sequence[str],
        contexts: Sequence[EventContext | None],
        accepted: list[tuple[int, int, int, int]],
        answered: list[int],
        bs: BatchState,
        snaps: _Snapshots,
        answer: Answer,
    ) -> None:
        """Capture the wave's people as its events left them (the requests are fused after the batch)."""
        positions = [p for p, *_ in accepted] + answered
        if not positions:
            return
        n = len(positions)
        who = np.fromiter((bs.index[persons[p]] for p in positions), np.int64, n)
        target = np.fromiter((self.where.get(events[p].platform, 0) for p in positions), np.int64, n)
        ts = np.fromiter((events[p].ts for p in positions), np.float64, n)
        platforms = self.fuser.platforms
        snaps.moments.append(Moment.of(bs, who, target, ts))
        snaps.x.append(context_matrix([contexts[p] for p in positions]))
        for i, t in zip(who.tolist(), target.tolist()):
            snaps.seqs.append(self.fuser.seq_rows(bs, i, platforms[t]))
            snaps.recent.append(self.fuser.recent_rows(bs, i))
            snaps.consumed.append(self._consumed_now(bs, i, t))
            snaps.journeys.append(self.fuser.journey(bs, i))
        snaps.event_ids += [events[p].event_id for p in positions]
        snaps.touched += [events[p].item_id for p in positions]
        answer.positions += positions
        answer.replayed += [False] * len(accepted) + [True] * len(answered)

    def _requests(self, bs: BatchState, snaps: _Snapshots) -> RequestBatch:
        if not snaps.moments:
            return RequestBatch.empty(len(self.fuser.platforms), self.store.dim)
        return self.fuser.requests(
            bs, Moment.concat(snaps.moments), np.concatenate(snaps.x), snaps.seqs, snaps.recent, snaps.event_ids, snaps.touched,
            snaps.consumed, snaps.touched, snaps.journeys,
        )  # fmt: skip


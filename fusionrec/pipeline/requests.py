"""Fuse people into ranking requests, a whole batch at once.

A request freezes what ranking and explaining need as of one moment (later events of the batch change
the person): the fused query — the platform profiles' unit directions mixed by fusion weights that
the learned context gate modulates (``fusion.py``, ``policy/context.py``) — the target platform's own
profile and last item, the platform's recent items (co-occurrence features), the consumed items
(never recommended), and per platform the weight, direction and newest items (explanations).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusionrec.fusion import FusionParams
from fusionrec.items import ItemStore
from fusionrec.learner.sequence import SequenceModel
from fusionrec.pipeline.gather import BatchState
from fusionrec.policy.context import ContextGate, EventContext, context_features, feature_dim

__all__ = ["RequestBatch", "Fuser", "EXPLAIN_RECENT", "context_matrix"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

EXPLAIN_RECENT = 5
"""Newest items per platform an explanation looks among."""

GATE_FEATURES = feature_dim(())


def context_matrix(contexts: Sequence[EventContext | None]) -> F64:
    """``(W, F)`` gate features: a bias, and hour, weekday and device where an event has them."""
    x = np.zeros((len(contexts), GATE_FEATURES))
    x[:, 0] = 1.0
    for w, ctx in enumerate(contexts):
        if ctx is not None:
            x[w] = context_features(ctx, "", ())
    return x


@dataclass
class RequestBatch:
    """``B`` requests as columns (``P`` = the configured platforms)."""

    platform: I64  # (B,) index into the platforms
    person: list[str]
    event_id: list[str]
    touched: list[str]  # the event's item (a person with no history is served items like it)
    fused: F32  # (B, d) unit query; the touched item's vector when nothing is known of the person
    known: npt.NDArray[np.bool_]  # (B,) fused is a real profile or a fallback (else nothing to rank)
    own: F32  # (B, d) the target platform's profile direction, zeros if none
    last: F32  # (B, d) the target platform's newest item, zeros if none
    weights: F64  # (B, P) gated fusion weights
    units: F32  # (B, P, d) profile directions
    present: npt.NDArray[np.bool_]  # (B, P) profiles that took part in the mix
    seq: list[list[int]]  # rows of the target platform's recent positive items, oldest first
    recent: list[list[list[int]]]  # per platform: rows of its newest items, newest first
    consumed: list[I64]  # rows of the target platform the person consumed, sorted
    seq_query: F32 | None = None  # (B, d) the sequence model's text-space queries; None without a model
    seq_hidden: F32 | None = None  # (B, h) its last hidden states, for a network whose ID embeddings score too

    def __len__(self) -> int:
        return len(self.person)

    def take(self, idx: Sequence[int]) -> RequestBatch:
        ix = np.asarray(idx, np.int64)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return RequestBatch(
            self.platform[ix], pick(self.person), pick(self.event_id), pick(self.touched), self.fused[ix], self.known[ix],
            self.own[ix], self.last[ix], self.weights[ix], self.units[ix], self.present[ix], pick(self.seq), pick(self.recent),
            pick(self.consumed), None if self.seq_query is None else self.seq_query[ix],
            None if self.seq_hidden is None else self.seq_hidden[ix],
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[RequestBatch], platforms: int, dim: int) -> RequestBatch:
        if not parts:
            return cls.empty(platforms, dim)
        if len(parts) == 1:
            return parts[0]
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        join = lambda name: [x for p in parts for x in getattr(p, name)]  # noqa: E731
        seq_query, seq_hidden = _joined([p.seq_query for p in parts], parts), _joined([p.seq_hidden for p in parts], parts)
        return cls(
            cat("platform"), join("person"), join("event_id"), join("touched"), cat("fused"), cat("known"), cat("own"),
            cat("last"), cat("weights"), cat("units"), cat("present"), join("seq"), join("recent"), join("consumed"), seq_query,
            seq_hidden,
        )  # fmt: skip

    @classmethod
    def empty(cls, platforms: int, dim: int) -> RequestBatch:
        z = np.zeros((0, dim), np.float32)
        return cls(np.zeros(0, np.int64), [], [], [], z, np.zeros(0, bool), z, z, np.zeros((0, platforms)),
                   np.zeros((0, platforms, dim), np.float32), np.zeros((0, platforms), bool), [], [], [])  # fmt: skip


def _joined(arrays: Sequence[F32 | None], parts: Sequence[RequestBatch]) -> F32 | None:
    """The parts' optional ``(len, width)`` arrays stacked, zeros for a part without one; None if none has."""
    width = next((a.shape[1] for a in arrays if a is not None), None)
    if width is None:
        return None
    return np.concatenate([a if a is not None else np.zeros((len(p), width), np.float32) for a, p in zip(arrays, parts)])


@dataclass
class Moment:
    """People's profiles copied at given moments (a wave of events), fused later all at once."""

    who: I64  # rows of the BatchState
    target: I64
    now: F64
    mass: F64  # (W, P)
    ts: F64
    count: npt.NDArray[np.int64]
    norm: F64
    unit: F32  # (W, P, d)

    @classmethod
    def of(cls, bs: BatchState, who: I64, target: I64, now: F64) -> Moment:
        return cls(who, target, now, bs.mass[who], bs.ts[who], bs.count[who], bs.norm[who], bs.unit[who])

    @classmethod
    def concat(cls, parts: Sequence[Moment]) -> Moment:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("who", "target", "now", "mass", "ts", "count", "norm", "unit")))

    def take(self, idx: npt.NDArray[np.int64]) -> Moment:
        return Moment(*(getattr(self, f)[idx] for f in ("who", "target", "now", "mass", "ts", "count", "norm", "unit")))

    def __len__(self) -> int:
        return len(self.who)


class Fuser:
    """Mixes gathered people into queries (see the module docstring)."""

    def __init__(self, store: ItemStore, gate: ContextGate, params: FusionParams, platforms: Sequence[str], *, restrict_to_target_platform: bool = False) -> None:
        self.store = store
        self.gate = gate
        self.params = params
        self.platforms = tuple(platforms)
        self.platform_weight = np.array([params.platform_weights.get(p, 1.0) for p in self.platforms])
        self.restrict = restrict_to_target_platform
        self.sequence: SequenceModel | None = None  # the learned sequence model, once one is installed

    def present(self, m: Moment) -> npt.NDArray[np.bool_]:
        """``(W, P)`` the profiles that take part in each moment's mix."""
        present = (m.count > 0) & (m.norm > 0)
        if self.restrict:
            present &= np.arange(len(self.platforms))[None, :] == m.target[:, None]
        return present

    def alphas(self, m: Moment) -> tuple[F64, npt.NDArray[np.bool_]]:
        """``(W, P)`` fusion weights as of each moment (before the gate), and which profiles take part."""
        present = self.present(m)
        dt = m.now[:, None] - m.ts
        with np.errstate(over="ignore", invalid="ignore"):
            decayed = m.mass * np.where(dt > 0, 0.5 ** (np.where(dt > 0, dt, 0.0) / self.params.half_life_s), 1.0)
        a = self.platform_weight[None, :] * decayed / (decayed + 1.0)
        a[np.arange(len(m)), m.target] *= self.params.same_platform_boost
        return np.where(present, a, 0.0), present

    def vectors(self, m: Moment, x: F64, seqs: Sequence[list[int]]) -> tuple[F32, npt.NDArray[np.bool_], F32, F32, F64, npt.NDArray[np.bool_]]:
        """``(fused, fused is a real profile, own, last, gated weights, present)`` of each moment."""
        alphas, present = self.alphas(m)
        weights = self.gated(alphas, present, m.target, x)
        fused, ok = self.mix(m.unit, weights, present)
        rows = np.arange(len(m))
        own = np.where(present[rows, m.target][:, None], m.unit[rows, m.target], 0.0).astype(np.float32)
        return fused, ok, own, self.last_vectors(seqs, m.target), weights, present

    def gated(self, alphas: F64, present: npt.NDArray[np.bool_], target: I64, x: F64, *, live: bool = False) -> F64:
        out = alphas.copy()
        for t in np.unique(target).tolist():
            rows = target == t
            out[rows] = self.gate.gate_batch(self.platforms[t], self.platforms, x[rows], alphas[rows], present[rows], live=live)
        return np.where(present, out, 0.0)

    @staticmethod
    def mix(units: F32, weights: F64, present: npt.NDArray[np.bool_]) -> tuple[F32, npt.NDArray[np.bool_]]:
        """``Σ w_p û_p`` normalised, per row; ``ok`` False where there is nothing to mix."""
        # weights of a long-idle history are tiny (~1e-26 after 7 years at a 30-day half-life) and their
        # squares underflowed float32; dividing by the largest |weight| first (the result is normalised
        # anyway) and summing in float64 avoids it
        w = np.where(present, weights, 0.0)
        scale = np.abs(w).max(axis=1, keepdims=True)
        w = np.where(scale > 0, w / np.where(scale > 0, scale, 1.0), 0.0).astype(np.float32)
        fused = np.matmul(w[:, None, :], units)[:, 0, :]
        norm = np.sqrt(np.einsum("wd,wd->w", fused, fused))
        ok = norm > 0
        fused[ok] /= norm[ok, None]
        return fused, ok

    def seq_rows(self, bs: BatchState, i: int, platform: str) -> list[int]:
        """Rows of the platform's items among the person's recent positive items, oldest first.

        The sequence features read the target platform's items only: other platforms' items co-occur
        with the target's far more loosely and drowned the signal (measured: amazon-arts-office NDCG@10
        0.045 with them, 0.057 without); the other platforms reach the ranking through the fused profile.
        """
        return self.store.rows_of_hashes(platform, bs.seq[i])

    def last_vectors(self, seqs: Sequence[list[int]], target: I64) -> F32:
        out = np.zeros((len(seqs), self.store.dim), np.float32)
        for t in np.unique(target).tolist():
            idx = [w for w in np.flatnonzero(target == t).tolist() if seqs[w]]
            if idx:
                out[idx] = self.store.platforms[self.platforms[t]].vectors[[seqs[w][-1] for w in idx]]
        return out

    def journey(self, bs: BatchState, i: int) -> list[int]:
        """The person's recent positive items of every platform (hashes, oldest first), as the
        sequence model reads them; empty while no model is installed (nothing to copy)."""
        return list(bs.seq[i]) if self.sequence is not None else []

    def seq_queries(self, journeys: Sequence[Sequence[int]], target: I64) -> tuple[F32, F32] | None:
        """``(B, d)`` the sequence model's text-space queries and ``(B, h)`` its hidden states (zeros for
        an empty journey); None without a model.  The journeys' items are located by hash all at once, packed one journey after another
        (no padding: :meth:`SequenceModel.queries`), their adaptor outputs read from the model's cache."""
        model = self.sequence
        if model is None:
            return None
        out = np.zeros((len(journeys), self.store.dim), np.float32)
        hidden = np.zeros((len(journeys), model.dim), np.float32)
        tails = [j[-model.max_len :] for j in journeys]
        counts = np.fromiter(map(len, tails), np.int64, len(tails))
        codes, rows = self.store.locate(np.fromiter(itertools.chain.from_iterable(tails), np.uint64, int(counts.sum())))
        index = {p: j for j, p in enumerate(self.platforms)}
        plat = np.array([index.get(p, -1) for p in self.store.platforms] + [-1], np.int64)[codes]  # code -1: the last, -1
        owner = np.repeat(np.arange(len(journeys)), counts)[plat >= 0]
        rows, plat = rows[plat >= 0], plat[plat >= 0]
        if self.restrict:  # the ablation: nothing of the other platforms reaches the ranking
            own = plat == target[owner]
            owner, rows, plat = owner[own], rows[own], plat[own]
        if not len(rows):
            return out, hidden
        per_journey = np.bincount(owner, minlength=len(journeys))
        live = np.flatnonzero(per_journey)
        lengths = per_journey[live]
        flat = np.empty((len(rows), model.dim), np.float32)
        for t in np.unique(plat).tolist():
            items, sel = self.store.platforms[self.platforms[t]], plat == t
            flat[sel] = model.input_reps(self.platforms[t], items.vectors[: items.n], self.store.version)[rows[sel]]
        nxt = np.empty_like(plat)
        nxt[:-1] = plat[1:]  # each position is asked about its next item's platform...
        nxt[np.cumsum(lengths) - 1] = target[live]  # ...the last about the request's
        out[live], hidden[live] = model.queries_hidden(flat, lengths, nxt)
        return out, hidden

    def consumed_rows(self, bs: BatchState, i: int, platform: str) -> I64:
        rows = np.array(self.store.rows_of_hashes(platform, bs.consumed[i]), np.int64)
        rows.sort()
        return rows

    def recent_rows(self, bs: BatchState, i: int) -> list[list[int]]:
        """Per platform, the rows of the person's newest items there, newest first (explanations)."""
        rows_of = self.store.rows_of_hashes
        return [rows_of(p, bs.recent[i][j][-1 : -EXPLAIN_RECENT - 1 : -1]) for j, p in enumerate(self.platforms)]

    def requests(
        self,
        bs: BatchState,
        m: Moment,
        x: F64,
        seqs: list[list[int]],
        recent: list[list[list[int]]],
        event_ids: list[str],
        touched: list[str],
        consumed: list[I64],
        fallback: Sequence[str] | None,
        journeys: Sequence[Sequence[int]] = (),
    ) -> RequestBatch:
        """The requests of the moments ``m`` (copied as each event left its person).  The vector of the
        item ``fallback[w]`` stands in for a person with no profile yet (looked up for those alone);
        without ``fallback`` such a request has ``known`` False.  ``journeys``: the people's cross-platform
        sequences (:meth:`journey`) when a sequence model is installed."""
        fused, ok, own, last, weights, present = self.vectors(m, x, seqs)
        if fallback is not None:
            missing = np.flatnonzero(~ok).tolist()
            if missing:
                fused[missing] = self.store.vectors_of([fallback[w] for w in missing])
            known = np.ones(len(m), bool)
        else:
            known = ok
        recent = [[rows if present_j else [] for rows, present_j in zip(per, flags)] for per, flags in zip(recent, present.tolist())]
        sequence = (self.seq_queries(journeys, m.target) if journeys else None) or (None, None)
        return RequestBatch(
            m.target.copy(), [bs.persons[i] for i in m.who.tolist()], event_ids, touched, fused, known, own,
            last, weights, m.unit, present, seqs, recent, consumed, *sequence,
        )  # fmt: skip

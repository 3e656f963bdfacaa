"""From scored candidates to the published top-K: consumed items out, the policy, the new-item slot.

Everything is batched over the requests of one platform: the consumed items of every request are
masked with one sorted join, the best ``M`` candidates are kept (``M = k`` for pure exploitation,
``policy.candidates`` when a policy explores), each arm's policy draws for all its requests at once,
and only the new-item slot, which changes few lists, is placed request by request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusionrec.learner.model import PlatformModel
from fusionrec.pipeline.candidates import Candidates
from fusionrec.pipeline.requests import RequestBatch
from fusionrec.hashing import combine, stable_hashes
from fusionrec.policy.ranker import Arm, PolicyRanker
from fusionrec.policy.rerank import rerank

__all__ = ["Chosen", "choose"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass
class Chosen:
    """Per request of the group, ``(B, k)``: the published rows (a valid prefix, -1 after it), their
    relevance scores and explored flags."""

    rows: I64
    scores: npt.NDArray[np.float64]
    explored: npt.NDArray[np.bool_]


def mask_consumed(cands: Candidates, consumed: Sequence[I64]) -> None:
    """Set the score of every consumed candidate to -inf: one sorted join for the whole batch.

    ``consumed[b]`` are request ``b``'s consumed rows, sorted; offset by ``b · width`` they concatenate
    into one sorted array that every candidate is looked up in.
    """
    lengths = np.fromiter((len(c) for c in consumed), np.int64, len(consumed))
    if not lengths.any():
        return
    flat = np.concatenate(consumed)
    width = int(max(cands.rows.max(initial=0), flat.max(initial=0))) + 1
    taken = flat + np.repeat(np.arange(len(consumed), dtype=np.int64) * width, lengths)
    want = np.arange(len(consumed), dtype=np.int64)[:, None] * width + np.maximum(cands.rows, 0)
    pos = np.minimum(np.searchsorted(taken, want), len(taken) - 1)
    cands.scores[(taken[pos] == want) & (cands.rows >= 0)] = -np.inf


def best_m(cands: Candidates, m: int) -> tuple[I64, F32, npt.NDArray[np.bool_]]:
    """The ``m`` best candidates of each request, best first (ties: earlier candidate first)."""
    c = cands.scores.shape[1]
    if m < c:
        part = np.argpartition(-cands.scores, m - 1, axis=1)[:, :m]
    else:
        part = np.broadcast_to(np.arange(c), cands.scores.shape)
    part_scores = np.take_along_axis(cands.scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    rows = np.take_along_axis(cands.rows, idx, axis=1)
    scores = np.take_along_axis(cands.scores, idx, axis=1)
    new = np.take_along_axis(cands.new, idx, axis=1)
    rows = np.where(np.isfinite(scores), rows, -1)
    return rows, scores, new


def choose(
    cands: Candidates,
    reqs: RequestBatch,
    model: PlatformModel,
    vectors: F32,
    policy: PolicyRanker,
    k: int,
    platform: str,
) -> Chosen:
    mask_consumed(cands, reqs.consumed)
    arms = [policy.arm(person, platform) for person in reqs.person]
    rows, scores, new = best_m(cands, policy.fetch(k, arms))
    out_rows = np.full((len(reqs), k), -1, np.int64)
    explored = np.zeros((len(reqs), k), bool)
    picked_scores = np.full((len(reqs), k), -np.inf)
    groups: dict[int, list[int]] = {}
    for b, arm in enumerate(arms):
        groups.setdefault(id(arm), []).append(b)
    for members in groups.values():
        arm = arms[members[0]]
        m = np.array(members)
        if arm.mmr_lambda != 1.0 or arm.novelty_weight != 0.0:
            for b in members:
                r, e = _rerank_one(arm, rows[b], scores[b], model, vectors, _keys(arm, [reqs.person[b]], [reqs.event_id[b]]), k)
                relevance = dict(zip(rows[b].tolist(), scores[b].tolist()))
                out_rows[b, : len(r)], explored[b, : len(e)] = r, e
                picked_scores[b, : len(r)] = [relevance[x] for x in r]
            continue
        pos, exp = arm.policy.select_batch(
            scores[m].astype(np.float64), k, _keys(arm, [reqs.person[b] for b in members], [reqs.event_id[b] for b in members]), *_counts(model, rows[m])
        )
        safe = np.maximum(pos, 0)
        out_rows[m] = np.where(pos >= 0, np.take_along_axis(rows[m], safe, axis=1), -1)
        picked_scores[m] = np.take_along_axis(scores[m], safe, axis=1)
        explored[m] = exp & (pos >= 0)
    chosen = Chosen(out_rows, picked_scores, explored)
    _place_new_items(chosen, cands, arms, k)
    return chosen


def _keys(arm: Arm, persons: list[str], event_ids: list[str]) -> npt.NDArray[np.uint64]:
    """:func:`~fusionrec.policy.exploration.draw_key` of every request, in array operations."""
    seed = np.uint64(int(getattr(arm.policy, "seed", 0)) % (1 << 64))
    return combine(seed, stable_hashes(persons), stable_hashes(event_ids))


def _counts(model: PlatformModel, rows: I64) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Long-half-life decayed interaction counts of ``rows`` and their platform total (what
    exploration and novelty treat as "how often seen")."""
    long = np.expm1(model.pop[1].astype(np.float64))
    known = (rows >= 0) & (rows < model.n)
    counts = np.where(known, long[np.where(known, rows, 0)], 0.0)
    return counts, np.full(len(rows), float(long.sum()))


def _rerank_one(arm: Arm, rows: I64, scores: F32, model: PlatformModel, vectors: F32, keys: npt.NDArray[np.uint64], k: int) -> tuple[list[int], list[bool]]:
    """MMR / novelty re-rank, then the arm's policy, for one request (only when configured)."""
    ok = rows >= 0
    items = [str(r) for r in rows[ok].tolist()]
    if not items:
        return [], []
    counts, total = _counts(model, rows[ok][None, :])
    reordered = rerank(
        items, scores[ok].astype(np.float64), vectors[rows[ok]], k,
        lam=arm.mmr_lambda, novelty_weight=arm.novelty_weight, popularity=counts[0], keep_rest=True,
    )  # fmt: skip
    relevance = dict(reordered)
    order = [int(i) for i, _ in reordered]
    # the policy ranks by score: the item at re-ranked position j gets the j-th best score, so the
    # re-ranked order is the exploit order and the exploration noise keeps its scale
    ranked = np.sort(np.array([relevance[str(r)] for r in order]))[::-1][None, :]
    position = {r: n for n, r in enumerate(rows[ok].tolist())}
    pos, exp = arm.policy.select_batch(
        ranked, k, keys, counts[0][[position[r] for r in order]][None, :], np.array([total[0]])
    )
    return [order[p] for p in pos[0].tolist() if p >= 0], [bool(e) for p, e in zip(pos[0].tolist(), exp[0].tolist()) if p >= 0]


def _place_new_items(chosen: Chosen, cands: Candidates, arms: Sequence[Arm], k: int) -> None:
    """Every list shows a new item at its arm's ``new_item_position`` or above:
    unless one is there already, the best new candidate is put there (moved up if it is lower in the
    list), the items below shift down and the last falls off."""
    slot = np.array([min(a.new_item_position, k) - 1 for a in arms])
    if not (slot >= 0).any():
        return
    n = len(arms)
    scores = np.where(cands.new, cands.scores, -np.inf)
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(n), best]
    best_row = cands.rows[np.arange(n), best]
    rows = chosen.rows
    is_new = (rows[:, :, None] == np.where(cands.new, cands.rows, -2)[:, None, :]).any(axis=2) & (rows >= 0)
    col = np.arange(k)[None, :]
    need = (slot >= 0) & np.isfinite(best_score) & ~(is_new & (col <= slot[:, None])).any(axis=1)
    if not need.any():
        return
    b = np.flatnonzero(need)
    r, sc, ex, sl = rows[b], chosen.scores[b], chosen.explored[b], slot[b]
    keep = (r != best_row[b, None]) & (r >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept items first, in their order
    kept_r, kept_s, kept_e = (np.take_along_axis(x, order, axis=1) for x in (r, sc, ex))
    n_kept = keep.sum(axis=1)
    at = np.minimum(sl, n_kept)  # the slot, or right after a short list
    src = np.where(col < at[:, None], col, col - 1)  # positions after the slot come from one earlier
    out_r = np.take_along_axis(kept_r, np.maximum(src, 0), axis=1)
    out_s = np.take_along_axis(kept_s, np.maximum(src, 0), axis=1)
    out_e = np.take_along_axis(kept_e, np.maximum(src, 0), axis=1)
    here = col == at[:, None]
    out_r = np.where(here, best_row[b, None], out_r)
    out_s = np.where(here, best_score[b, None], out_s)
    out_e = np.where(here, True, out_e)
    valid = col <= n_kept[:, None]  # the kept items and the new one
    chosen.rows[b] = np.where(valid, out_r, -1)
    chosen.scores[b] = np.where(valid, out_s, -np.inf)
    chosen.explored[b] = valid & out_e

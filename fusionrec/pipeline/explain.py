"""Why each published item is there: the platform profile and the past items that pulled it up most.

For every published item of every request, in one batched product: the contribution of each
platform profile (its fused weight × the cosine of its direction with the item), the best platform,
and among that platform's newest items the (up to) three most similar to the item.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fusionrec.items import ItemStore
from fusionrec.pipeline.choose import Chosen
from fusionrec.pipeline.requests import EXPLAIN_RECENT, RequestBatch

__all__ = ["explain", "BECAUSE_OF"]

BECAUSE_OF = 3


def explain(chosen: Chosen, reqs: RequestBatch, store: ItemStore, platform: str, platforms: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    """Per request, its published items as recommendation items (``fusionrec.contracts.RecItem`` fields)."""
    items = store.platforms[platform]
    n_b, n_p = len(reqs), len(platforms)
    n_k = chosen.rows.shape[1] or 1
    rec_rows = np.maximum(chosen.rows, 0)
    rec = items.vectors[rec_rows]  # (B, K, d)
    recent = np.zeros((n_b * n_p * EXPLAIN_RECENT, store.dim), np.float32)
    recent_ok = np.zeros(n_b * n_p * EXPLAIN_RECENT, bool)
    for j, name in enumerate(platforms):
        flat: list[int] = []
        src: list[int] = []
        for b in range(n_b):
            rows = reqs.recent[b][j]
            if rows:
                at = (b * n_p + j) * EXPLAIN_RECENT
                flat.extend(range(at, at + len(rows)))
                src.extend(rows)
        if src:
            recent[flat] = store.platforms[name].vectors[src]
            recent_ok[flat] = True
    recent = recent.reshape(n_b, n_p * EXPLAIN_RECENT, store.dim)
    recent_ok = recent_ok.reshape(n_b, n_p, EXPLAIN_RECENT)
    contributions = np.matmul(rec, reqs.units.transpose(0, 2, 1)) * reqs.weights[:, None, :].astype(np.float32)  # (B, K, P)
    # mask only the platforms that took part: one with a weight <= 0 is still a reason
    contributions = np.where(reqs.present[:, None, :], contributions, -np.inf)
    best = contributions.argmax(axis=2)  # (B, K)
    sims = np.matmul(rec, recent.transpose(0, 2, 1)).reshape(n_b, n_k, n_p, EXPLAIN_RECENT)
    chosen_sims = np.take_along_axis(sims, best[:, :, None, None], axis=2)[:, :, 0, :]
    ok = recent_ok[np.arange(n_b)[:, None], best]  # (B, K, R)
    top = np.argsort(np.where(ok, -chosen_sims, np.inf), axis=2, kind="stable")[:, :, :BECAUSE_OF]
    valid = np.take_along_axis(ok, top, axis=2)  # the valid ones come first (sorted before the padding)
    top, n_valid = top.tolist(), valid.sum(axis=2).tolist()
    best_contribution = np.take_along_axis(contributions, best[:, :, None], axis=2)[:, :, 0].astype(np.float64).round(4).tolist()
    best_l = best.tolist()
    known = reqs.present.any(axis=1).tolist()
    ids = items.ids
    names = [store.platforms[p].ids if p in store.platforms else [] for p in platforms]
    out: list[list[dict[str, Any]]] = []
    ids_of: list[list[list[str] | None]] = [[None] * n_p for _ in range(n_b)]
    lengths = (chosen.rows >= 0).sum(axis=1).tolist()
    all_rows, all_scores, all_explored = chosen.rows.tolist(), chosen.scores.round(6).tolist(), chosen.explored.tolist()
    for b in range(n_b):
        n = lengths[b]
        rows, scores, explored = all_rows[b][:n], all_scores[b][:n], all_explored[b][:n]
        if not known[b]:
            reason = {"kind": "similar_to_last_item", "platform": platform, "because_of": [reqs.touched[b]]}
            out.append([{"item_id": ids[r], "score": s, "platform": platform, "reason": reason, "explored": e} for r, s, e in zip(rows, scores, explored)])
            continue
        recs = []
        for k, (r, s, e) in enumerate(zip(rows, scores, explored)):
            j = best_l[b][k]
            reason: dict[str, Any] = {"kind": "similar_to_history", "platform": platforms[j], "contribution": best_contribution[b][k]}
            c = n_valid[b][k]
            if c:
                recent_ids = ids_of[b][j]
                if recent_ids is None:  # each (request, platform) once, and only when some item names it
                    recent_ids = ids_of[b][j] = list(map(names[j].__getitem__, reqs.recent[b][j]))
                reason["because_of"] = list(map(recent_ids.__getitem__, top[b][k][:c]))
            recs.append({"item_id": ids[r], "score": s, "platform": platform, "reason": reason, "explored": e})
        out.append(recs)
    return out

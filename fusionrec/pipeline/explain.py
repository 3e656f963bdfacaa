"""Why each published item is there: the platform profile and the past items that pulled it up most.

For every published item of every request, in one batched product: the contribution of each
platform profile (its fused weight × the cosine of its direction with the item), the best platform,
and among that platform's newest items the (up to) three most similar to the item.  The arrays are
computed for the whole group; Python only builds the published dicts, in one pass over every item
(each platform's recent rows are flattened once, not request by request).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.items import ItemStore
from fusionrec.pipeline.choose import Chosen
from fusionrec.pipeline.requests import EXPLAIN_RECENT, RequestBatch

__all__ = ["explain", "BECAUSE_OF"]

BECAUSE_OF = 3
HISTORY = "similar_to_history"


def _recent(reqs: RequestBatch, store: ItemStore, platforms: tuple[str, ...]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
    """``(B, P·R, d)`` vectors of every request's newest items per platform, which slots hold one, and
    their ids ``(B, P, R)`` (None where empty)."""
    n_b, n_p, n_r = len(reqs), len(platforms), EXPLAIN_RECENT
    vectors = np.zeros((n_b, n_p, n_r, store.dim), np.float32)
    ok = np.zeros((n_b, n_p, n_r), bool)
    ids = np.full((n_b, n_p, n_r), None, object)
    slots = np.arange(n_r)
    for j, per_request in enumerate(zip(*reqs.recent)):
        lengths = np.fromiter(map(len, per_request), np.int64, n_b)
        total = int(lengths.sum())
        if not total:
            continue
        # the rows of request b fill its first lengths[b] slots: one boolean mask, row-major like the flat list
        filled = slots < lengths[:, None]
        src = np.fromiter(itertools.chain.from_iterable(per_request), np.int64, total)
        items = store.platforms[platforms[j]]
        vectors[:, j][filled] = items.vectors[src]
        ok[:, j] = filled
        ids[:, j][filled] = items.names[src]
    return vectors.reshape(n_b, n_p * n_r, store.dim), ok, ids


def explain(chosen: Chosen, reqs: RequestBatch, store: ItemStore, platform: str, platforms: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    """Per request, its published items as recommendation items (``fusionrec.contracts.RecItem`` fields)."""
    items = store.platforms[platform]
    n_b, n_p = len(reqs), len(platforms)
    n_k = chosen.rows.shape[1] or 1
    rec = items.vectors[np.maximum(chosen.rows, 0)]  # (B, K, d)
    recent, recent_ok, recent_ids = _recent(reqs, store, platforms)
    contributions = np.matmul(rec, reqs.units.transpose(0, 2, 1)) * reqs.weights[:, None, :].astype(np.float32)  # (B, K, P)
    # mask only the platforms that took part: one with a weight <= 0 is still a reason
    contributions = np.where(reqs.present[:, None, :], contributions, -np.inf)
    best = contributions.argmax(axis=2)  # (B, K)
    sims = np.matmul(rec, recent.transpose(0, 2, 1)).reshape(n_b, n_k, n_p, EXPLAIN_RECENT)
    chosen_sims = np.take_along_axis(sims, best[:, :, None, None], axis=2)[:, :, 0, :]
    b_idx = np.arange(n_b)[:, None]
    ok = recent_ok[b_idx, best]  # (B, K, R)
    top = np.argsort(np.where(ok, -chosen_sims, np.inf), axis=2, kind="stable")[:, :, :BECAUSE_OF]
    n_valid = np.take_along_axis(ok, top, axis=2).sum(axis=2)  # the valid ones come first (sorted before the padding)
    because = recent_ids[b_idx[:, :, None], best[:, :, None], top]  # (B, K, 3) ids, None after the valid ones
    contribution = np.take_along_axis(contributions, best[:, :, None], axis=2)[:, :, 0].astype(np.float64).round(4)

    published = chosen.rows >= 0  # a valid prefix of each row
    at = np.nonzero(published)
    lengths = published.sum(axis=1).tolist()
    flat = [
        {"item_id": i, "score": s, "platform": platform, "reason": {"kind": HISTORY, "platform": platforms[j], "contribution": c, "because_of": ids if n == BECAUSE_OF else ids[:n]} if n else {"kind": HISTORY, "platform": platforms[j], "contribution": c}, "explored": e}
        for i, s, e, j, c, ids, n in zip(
            items.names[chosen.rows[at]].tolist(), chosen.scores.round(6)[at].tolist(), chosen.explored[at].tolist(),
            best[at].tolist(), contribution[at].tolist(), because[at].tolist(), n_valid[at].tolist(),
        )
    ]  # fmt: skip
    bounds = [0, *itertools.accumulate(lengths)]
    for b in np.flatnonzero(~reqs.present.any(axis=1)).tolist():  # nothing known of the person: the item they touched
        last_item = {"kind": "similar_to_last_item", "platform": platform, "because_of": [reqs.touched[b]]}
        for item in flat[bounds[b] : bounds[b + 1]]:
            item["reason"] = last_item
    return [flat[start:stop] for start, stop in zip(bounds, bounds[1:])]

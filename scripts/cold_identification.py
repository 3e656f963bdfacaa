"""How well text alone can pick a cold target out of the never-interacted pool (streaming protocol).

    HF_HUB_OFFLINE=1 python scripts/cold_identification.py DATASET_DIR

The events are replayed in time order as ``fusionrec eval`` replays them. At every target whose user
has an earlier item on the target's platform, the pool is that platform's items nobody had
interacted with yet; a target is cold when its item is in the pool. Each pool item is scored by the
cosine of its text vector (the configured encoder, through the vector cache) with the user's last
item there (``last``) and with the mean of the last five (``mean5``).

Printed: the cold targets' rank within the pool (hit@1, @3, @10, and NDCG@10 as if the list held only
pool items: what no ranker that also shows known items can beat with this signal), then, for a
threshold τ on the best pool item's cosine with the last item, how many cold and warm targets such a
gate fires on and how often its pick is the target (docs/EVALUATION.md, "Cold items on amazon-beauty").
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Iterable, Mapping

import numpy as np

from fusionrec.config import load_config
from fusionrec.dataset import DatasetEvent, read_events, read_items

THRESHOLDS = (0.8, 0.85, 0.9, 0.95, 0.98)


def item_vectors(folder: str) -> dict[str, tuple[dict[str, int], np.ndarray]]:
    """Per platform: item id → row, and the rows' unit text vectors, as the workers encode them."""
    from stream.compose import build_recommender

    rec = build_recommender(load_config())
    rec.apply_items(list(read_items(folder)))
    out = {}
    for platform, items in rec.store.platforms.items():
        names = items.names[: items.n].tolist()
        out[platform] = (dict(zip(names, range(len(names)))), np.asarray(items.vectors[: items.n], np.float32))
    return out


def replay(events: Iterable[DatasetEvent], platforms: Mapping[str, tuple[dict[str, int], np.ndarray]]) -> np.ndarray:
    """One row per target with history: ``(cold, rank by last, rank by mean5, best cosine with last)``
    (ranks within the pool, -1 for a warm target); ``platforms`` as :func:`item_vectors` gives them."""
    seen = {p: np.zeros(len(rows), bool) for p, (rows, _) in platforms.items()}
    history: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    out = []
    for de in events:
        e = de.event
        rows, vectors = platforms[e.platform]
        row = rows.get(e.item_id)
        if row is None:
            continue
        past = history[(e.user_id, e.platform)]
        pool = np.flatnonzero(~seen[e.platform]) if de.role == "target" and past else np.empty(0, np.int64)
        if len(pool):
            by_last = vectors[pool] @ vectors[past[-1]]
            by_mean = vectors[pool] @ vectors[past[-5:]].mean(axis=0)
            cold = not seen[e.platform][row]
            if cold:
                at = int(np.searchsorted(pool, row))
                out.append(
                    (1, int((by_last > by_last[at]).sum()), int((by_mean > by_mean[at]).sum()), float(by_last.max()))
                )
            else:
                out.append((0, -1, -1, float(by_last.max())))
        seen[e.platform][row] = True
        past.append(row)
    return np.array(out, dtype=float).reshape(-1, 4)


def main(folder: str) -> None:
    res = replay(read_events(folder), item_vectors(folder))
    cold = res[:, 0] == 1
    print(f"targets with history {len(res)}, cold {int(cold.sum())}")
    for name, col in (("last", 1), ("mean5", 2)):
        r = res[cold, col]
        ndcg = np.where(r < 10, 1 / np.log2(r + 2), 0.0).mean()
        print(
            f"{name}: hit@1 {np.mean(r < 1):.4f}  hit@3 {np.mean(r < 3):.4f}  hit@10 {np.mean(r < 10):.4f}  pool-only ndcg@10 {ndcg:.4f}"
        )
    for tau in THRESHOLDS:
        fires = res[:, 3] > tau
        hits = fires & cold & (res[:, 1] < 1)
        print(
            f"gate tau {tau}: fires on {int((fires & cold).sum())} cold targets ({int(hits.sum())} picks are the target) and {int((fires & ~cold).sum())} of {int((~cold).sum())} warm ones"
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(sys.argv[1])

"""How much the other platform's history says about a target, by co-occurrence alone.

    python scripts/cross_platform_signal.py DATASET_DIR [test|valid]

The frozen protocol's targets (``test``), or each user's last history item with the real targets
dropped (``valid``, as ``fusionrec eval --protocol frozen --split valid``). Co-occurrence is counted
over the history at user level, cosine-normalised. Each target on platform p is ranked over p's
items, history excluded, by: ``own`` (item-kNN from the user's history on p), ``cross`` (from the
user's history on the other platforms), and ``own + λ·cross``. The printed NDCG@10 bounds what a
cross-platform co-occurrence signal could add to a within-platform one (docs/EVALUATION.md, "Where
issue 16 stands").
"""

from __future__ import annotations

import collections
import math
import sys

import numpy as np
import scipy.sparse as sp

from fusionrec.dataset import read_events

LAMBDAS = (0.1, 0.3, 1.0)


def load(folder: str, split: str) -> tuple[dict[str, dict[str, list[int]]], list[tuple[str, str, int]], dict[str, dict[str, int]]]:
    """Per user and platform the history's item columns (time order), the targets, the item columns."""
    hist: dict[str, dict[str, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    targets, last = [], {}
    items: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for de in read_events(folder):
        e = de.event
        col = items[e.platform].setdefault(e.item_id, len(items[e.platform]))
        if de.role == "history":
            hist[e.user_id][e.platform].append(col)
            last[e.user_id] = (e.platform, col)
        else:
            targets.append((e.user_id, e.platform, col))
    if split == "valid":
        targets = []
        for user, (platform, col) in last.items():
            hist[user][platform].pop()  # the events come in time order: the last one appended
            targets.append((user, platform, col))
    return hist, targets, items


def cosine_cooc(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    c = (a.T @ b).tocsr().astype(np.float32)
    na = np.sqrt(np.asarray(a.sum(0)).ravel()) + 1e-9
    nb = np.sqrt(np.asarray(b.sum(0)).ravel()) + 1e-9
    return (sp.diags(1 / na) @ c @ sp.diags(1 / nb)).tocsr()


def ndcg_at_10(scores: np.ndarray, target: int, consumed: list[int]) -> float:
    s = scores.copy()
    s[consumed] = -np.inf
    if not np.isfinite(s[target]):
        return 0.0
    rank = int((s > s[target]).sum())
    return 1 / math.log2(rank + 2) if rank < 10 else 0.0


def main(folder: str, split: str) -> None:
    hist, targets, items = load(folder, split)
    plats, users = sorted(items), sorted(hist)
    row = {u: n for n, u in enumerate(users)}
    bought = {}
    for p in plats:
        pairs = [(row[u], c) for u in users for c in set(hist[u].get(p, []))]
        r, c = zip(*pairs) if pairs else ((), ())
        bought[p] = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(users), len(items[p])))
    results: dict[str, list[float]] = collections.defaultdict(list)
    for p in plats:
        own = cosine_cooc(bought[p], bought[p])
        own.setdiag(0)
        cross = {q: cosine_cooc(bought[q], bought[p]) for q in plats if q != p}
        tie = np.asarray(bought[p].sum(0)).ravel() * 1e-6  # ties broken by popularity
        for user, platform, target in targets:
            if platform != p or user not in row:
                continue
            h = hist[user]
            s_own = np.asarray(own[h[p]].sum(0)).ravel() if h.get(p) else np.zeros(len(items[p]), np.float32)
            s_cross = np.zeros(len(items[p]), np.float32)
            for q, m in cross.items():
                if h.get(q):
                    s_cross += np.asarray(m[h[q]].sum(0)).ravel()
            consumed = h.get(p, [])
            results["own"].append(ndcg_at_10(s_own + tie, target, consumed))
            results["cross"].append(ndcg_at_10(s_cross + tie, target, consumed))
            for lam in LAMBDAS:
                results[f"own + {lam} cross"].append(ndcg_at_10(s_own + lam * s_cross + tie, target, consumed))
    base = float(np.mean(results["own"]))
    print(f"{folder} ({split}, {len(results['own'])} targets): NDCG@10")
    for name, values in results.items():
        print(f"  {name:16s} {np.mean(values):.4f}  ({np.mean(values) / base - 1:+.1%} against own)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "test")

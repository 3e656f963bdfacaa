"""Checkpoints of the learner: safetensors tensors + JSON metadata, keyed by item id (not by row).

Rows are the item store's and differ between workers and restarts, so every row-indexed array is
saved with the item ids of its rows and loaded onto the rows those items have now (items gone from
the catalog are dropped).  Weights are saved by feature name: a checkpoint written before a feature
existed loads with that feature at its starting weight; one naming a feature this version does not
know is refused.  Writing is split so a worker can copy on its event loop and write in a thread:
:func:`state_dict` (copies, fast) then :func:`write` (files, slow).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionrec.errors import CheckpointError
from fusionrec.learner.model import FEATURES, INITIAL_WEIGHTS
from fusionrec.learner.stats import InteractionStats
from fusionrec.learner.trainer import INITIAL_GRAD_SQ

if TYPE_CHECKING:
    from fusionrec.learner import OnlineLearner

__all__ = ["state_dict", "load_state_dict", "write", "read"]

TENSORS = "learner.safetensors"
MANIFEST = "manifest.json"


def state_dict(learner: OnlineLearner) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Copies of everything learned (statistics applied first), with the item ids of the rows."""
    learner.publish()
    store, stats = learner.store, learner.stats
    names: dict[str, int] = {}

    def ids_of(platform: str, rows: np.ndarray) -> np.ndarray:
        items = store.platforms[platform].ids
        return np.array([names.setdefault(items[r], len(names)) for r in rows.tolist()], np.int64)

    tensors: dict[str, np.ndarray] = {}
    platforms = sorted(store.platforms)
    for p in platforms:
        n = store.platforms[p].n
        if p in learner.adagrad.weights:
            tensors[f"weights.{p}"] = learner.adagrad.weights[p].copy()
            tensors[f"grad_sq.{p}"] = learner.adagrad.grad_sq[p].copy()
        s = stats.platform(p)
        s.grow(n)
        touched = np.flatnonzero((s.counts[:n] > 0) | (s.src_total[:n] > 0))
        tensors[f"items.{p}"] = ids_of(p, touched)
        tensors[f"pop.{p}"] = s.pop[:, touched].copy()
        tensors[f"count.{p}"] = s.counts[touched].copy()
        tensors[f"src_total.{p}"] = s.src_total[touched].copy()
        src, dst, val = s.cooc.triples()
        tensors[f"cooc_src.{p}"] = ids_of(p, src)
        tensors[f"cooc_dst.{p}"] = ids_of(p, dst)
        tensors[f"cooc_val.{p}"] = val
    context_tensors, context_meta = learner.context.state()
    tensors.update(context_tensors)
    meta = {
        **context_meta,
        "features": json.dumps(FEATURES),
        "items": json.dumps(list(names)),
        "platforms": json.dumps(platforms),
        "pop_ts": repr(stats.pop_ts),
        "pop_ref": repr(stats.pop_ref),
        "learned": str(learner.learned),
        "positives": str(learner.positives),
        "version": str(learner.model.version),
    }
    return tensors, meta


def _by_feature(values: np.ndarray, names: list[str], defaults: np.ndarray) -> np.ndarray:
    out = defaults.astype(np.float64).copy()
    for name, value in zip(names, np.asarray(values, np.float64).tolist()):
        out[FEATURES.index(name)] = value
    return out


def load_state_dict(learner: OnlineLearner, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    """Restore onto the current item store (its catalog must already be loaded)."""
    saved = json.loads(meta["features"])
    unknown = sorted(set(saved) - set(FEATURES))
    if unknown:
        raise CheckpointError(f"checkpoint has features this version does not know: {unknown} (it knows {list(FEATURES)})")
    names = json.loads(meta["items"])
    store = learner.store
    learner.stats = InteractionStats(tuple(learner.stats.half_lives_s))
    learner.adagrad.weights, learner.adagrad.grad_sq = {}, {}
    for p in json.loads(meta["platforms"]):
        if p not in store.platforms:
            continue
        items = store.platforms[p]
        row_of = items.row_of

        def rows_of(idx: np.ndarray) -> np.ndarray:
            return np.array([row_of.get(names[i], -1) for i in idx.tolist()], np.int64)

        if f"weights.{p}" in tensors:
            learner.adagrad.weights[p] = _by_feature(tensors[f"weights.{p}"], saved, INITIAL_WEIGHTS)
            learner.adagrad.grad_sq[p] = _by_feature(tensors[f"grad_sq.{p}"], saved, np.full(len(FEATURES), INITIAL_GRAD_SQ))
        s = learner.stats.platform(p)
        s.grow(items.n)
        rows = rows_of(tensors[f"items.{p}"])
        ok = rows >= 0
        s.pop[:, rows[ok]] = tensors[f"pop.{p}"][:, ok]
        s.counts[rows[ok]] = tensors[f"count.{p}"][ok]
        s.src_total[rows[ok]] = tensors[f"src_total.{p}"][ok]
        src, dst = rows_of(tensors[f"cooc_src.{p}"]), rows_of(tensors[f"cooc_dst.{p}"])
        keep = (src >= 0) & (dst >= 0)
        s.cooc.add(items.n, src[keep], dst[keep], tensors[f"cooc_val.{p}"][keep])
    learner.stats.pop_ts = float(meta["pop_ts"])
    learner.stats.pop_ref = float(meta["pop_ref"])
    learner.learned = int(meta["learned"])
    learner.positives = int(meta.get("positives", "0"))
    learner.context.load(tensors, meta)
    version = int(meta["version"])
    learner.publish()
    learner.model = type(learner.model)(version, learner.model.platforms)


def write(directory: str | Path, tensors: dict[str, np.ndarray], meta: dict[str, str], manifest: dict[str, Any]) -> Path:
    """``learner.safetensors`` + ``manifest.json`` into ``directory``, each atomically."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    os.close(fd)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=meta)
    os.replace(tmp, directory / TENSORS)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as fh:
        json.dump({"features": list(FEATURES), **manifest}, fh, indent=2, default=str)
    os.replace(tmp, directory / MANIFEST)
    return directory / TENSORS


def read(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    path = Path(directory) / TENSORS
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the learner checkpoint {path}: {exc}") from exc
    return tensors, meta

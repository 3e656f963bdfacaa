"""Checkpoints of the learner: safetensors tensors + JSON metadata, keyed by item id (not by row).

Rows are the item store's and differ between workers and restarts, so every platform's arrays are
saved with the item id of each row and loaded onto the rows those items have now (items gone from
the catalog are dropped).  Weights are saved by feature name: a checkpoint written before a feature
existed loads with that feature at its starting weight; one naming a feature this version does not
know is refused.  Writing is split so a worker can copy on its event loop and do the rest in a thread:
:func:`capture` (copies, O(catalog)), then :func:`to_tensors` and :func:`write` (O(co-occurrence pairs), files).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionrec.errors import CheckpointError
from fusionrec.learner.model import FEATURES, INITIAL_WEIGHTS
from fusionrec.learner.stats import InteractionStats
from fusionrec.learner.trainer import INITIAL_GRAD_SQ

if TYPE_CHECKING:
    from fusionrec.learner import OnlineLearner
    from fusionrec.learner.sequence import SequenceModel

__all__ = ["Captured", "capture", "to_tensors", "state_dict", "load_state_dict", "write", "read"]

TENSORS = "learner.safetensors"
MANIFEST = "manifest.json"


@dataclass
class Captured:
    """What a checkpoint needs, taken from the learner in O(catalog) copies (no per-pair work): the
    co-occurrence matrices are referenced, not copied (the learner replaces them, never changes them)."""

    platforms: dict[str, dict[str, Any]]
    context: tuple[dict[str, np.ndarray], dict[str, str]]
    meta: dict[str, str]
    sequence: SequenceModel | None = None  # the served network (replaced whole on a change, never changed)


def capture(learner: OnlineLearner) -> Captured:
    """A consistent copy of everything learned (statistics applied first); fast enough for the event loop."""
    learner.publish()
    store, stats = learner.store, learner.stats
    platforms: dict[str, dict[str, Any]] = {}
    for p in sorted(store.platforms):
        n = store.platforms[p].n
        s = stats.platform(p)
        s.grow(n)
        platforms[p] = {
            "ids": list(store.platforms[p].ids[:n]),
            "weights": learner.adagrad.weights[p].copy() if p in learner.adagrad.weights else None,
            "grad_sq": learner.adagrad.grad_sq[p].copy() if p in learner.adagrad.grad_sq else None,
            "pop": s.pop[:, :n].copy(),
            "count": s.counts[:n].copy(),
            "src_total": s.src_total[:n].copy(),
            "cooc": (s.cooc.base, s.cooc.recent),
        }
    meta = {
        "features": json.dumps(FEATURES),
        "platforms": json.dumps(sorted(platforms)),
        "pop_ts": repr(stats.pop_ts),
        "pop_ref": repr(stats.pop_ref),
        "learned": str(learner.learned),
        "positives": str(learner.positives),
        "version": str(learner.model.version),
    }
    return Captured(platforms, learner.context.state(), meta, learner.sequence)


def to_tensors(c: Captured) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The checkpoint's tensors and metadata (the slow part: call it off the event loop)."""
    tensors: dict[str, np.ndarray] = {}
    meta = dict(c.meta)
    for p, d in c.platforms.items():
        meta[f"ids.{p}"] = json.dumps(d["ids"])  # the item id of every row: rows differ between workers
        if d["weights"] is not None:
            tensors[f"weights.{p}"] = d["weights"]
            tensors[f"grad_sq.{p}"] = d["grad_sq"]
        tensors[f"pop.{p}"] = d["pop"]
        tensors[f"count.{p}"] = d["count"]
        tensors[f"src_total.{p}"] = d["src_total"]
        # base and recent apart: a restored learner must sum them as the original did, to the last bit
        for prefix, part in zip(("cooc", "cooc_recent"), d["cooc"]):
            m = part.tocoo()
            tensors[f"{prefix}_src.{p}"] = m.row.astype(np.int64)
            tensors[f"{prefix}_dst.{p}"] = m.col.astype(np.int64)
            tensors[f"{prefix}_val.{p}"] = m.data.astype(np.float32)
    context_tensors, context_meta = c.context
    tensors.update(context_tensors)
    meta.update(context_meta)
    return tensors, meta


def state_dict(learner: OnlineLearner) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Everything learned, ready to write."""
    return to_tensors(capture(learner))


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
    store = learner.store
    learner.stats = InteractionStats(tuple(learner.stats.half_lives_s), neighbours=learner.stats.neighbours)
    learner.adagrad.weights, learner.adagrad.grad_sq = {}, {}
    for p in json.loads(meta["platforms"]):
        if p not in store.platforms:
            continue
        items = store.platforms[p]
        row_of = items.row_of
        # saved row -> row of the same item here (-1: gone from the catalog), one extra slot for -1
        now = np.array([row_of.get(i, -1) for i in json.loads(meta[f"ids.{p}"])] + [-1], np.int64)

        def rows_of(saved: np.ndarray) -> np.ndarray:
            return now[np.where((saved >= 0) & (saved < len(now) - 1), saved, len(now) - 1)]

        if f"weights.{p}" in tensors:
            learner.adagrad.weights[p] = _by_feature(tensors[f"weights.{p}"], saved, INITIAL_WEIGHTS)
            learner.adagrad.grad_sq[p] = _by_feature(tensors[f"grad_sq.{p}"], saved, np.full(len(FEATURES), INITIAL_GRAD_SQ))
        s = learner.stats.platform(p)
        s.grow(items.n)
        rows = now[:-1]
        ok = rows >= 0
        s.pop[:, rows[ok]] = tensors[f"pop.{p}"][:, ok]
        s.counts[rows[ok]] = tensors[f"count.{p}"][ok]
        s.src_total[rows[ok]] = tensors[f"src_total.{p}"][ok]
        parts = []
        for prefix in ("cooc", "cooc_recent"):  # a checkpoint from before the split has no recent part
            if f"{prefix}_src.{p}" in tensors:
                src, dst = rows_of(tensors[f"{prefix}_src.{p}"]), rows_of(tensors[f"{prefix}_dst.{p}"])
                keep = (src >= 0) & (dst >= 0)
                parts.append((src[keep], dst[keep], tensors[f"{prefix}_val.{p}"][keep]))
        s.cooc.restore(items.n, *parts)
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

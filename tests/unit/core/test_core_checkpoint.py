"""Checkpoints: atomic, verified, pruned; a restored model recommends what the saved one did (scores up to float rounding)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from fakes import DictStates, build_core
from fusionrec.checkpoint import CheckpointStore
from fusionrec.config import load_config
from fusionrec.contracts import BehaviorEvent, ItemUpsert
from fusionrec.core import Recommender
from fusionrec.errors import CheckpointError

DIM = 16


def make_recommender() -> Recommender:
    cfg = load_config(env={"FUSIONREC_PLATFORMS": "shop,video", "FUSIONREC_TOP_K": "5"})
    # (the items' platforms were "s" and "v" here before: every event was then an unknown_item and the
    # restored-model test compared two empty lists)
    items = [ItemUpsert(item_id=f"{p[0]}{i}", platform=p, title=f"{p} item {i}", text=f"text {i % 7}") for p in ("shop", "video") for i in range(60)]
    return build_core(cfg=cfg, items=items, dim=DIM)


def events(start: int, n: int) -> list[BehaviorEvent]:
    rng = np.random.default_rng(start)
    out = []
    for k in range(start, start + n):
        platform = "shop" if rng.random() < 0.5 else "video"
        prefix = "s" if platform == "shop" else "v"
        out.append(
            BehaviorEvent(
                event_id=f"e{k}", ts=1_700_000_000.0 + k * 60, platform=platform, user_id=f"u{rng.integers(8)}",
                item_id=f"{prefix}{rng.integers(60)}", event_type="click", person_id=f"p{rng.integers(8)}",
            )  # fmt: skip
        )
    return out


def same_lists(a: list[tuple], b: list[tuple]) -> bool:
    """The same events, items and exploration flags; scores equal up to float rounding (a product's
    rounding depends on where a vector sits in the block it is scored from, and a restored worker
    builds its blocks afresh)."""
    if [(e, [(i, x) for i, _, x in items]) for e, items in a] != [(e, [(i, x) for i, _, x in items]) for e, items in b]:
        return False
    return all(np.allclose([s for _, s, _ in x], [s for _, s, _ in y], rtol=1e-5, atol=1e-6) for (_, x), (_, y) in zip(a, b))


def run(rec: Recommender, evs: list[BehaviorEvent], states: DictStates, batch: int = 25) -> list[tuple]:
    """Micro-batches, as a worker takes them (statistics are published at the start of each)."""
    out = []
    for s in range(0, len(evs), batch):
        outcomes, _ = rec.process(evs[s : s + batch], states)
        out += [(o.event.event_id, [(i["item_id"], i["score"], i["explored"]) for i in o.items]) for o in outcomes]
    return out


def test_restored_model_gives_identical_recommendations(tmp_path: Path) -> None:
    original = make_recommender()
    states = DictStates()
    run(original, events(0, 400), states)
    learned = original.learner.weights
    assert all(np.count_nonzero(w[[3, 4, 5, 6, 7]]) for w in learned.values())  # co-occurrence and popularity in use
    store = CheckpointStore(tmp_path, keep=2)
    ckpt = store.write(lambda d: original.save_checkpoint(str(d / "model")), model_version=original.model_version,
                       config_digest=original.cfg.digest(), offsets={"t": {0: 400}})  # fmt: skip

    restored = make_recommender()
    restored.load_checkpoint(str(store.latest().path / "model"))  # type: ignore[union-attr]
    assert store.latest().offsets == {"t": {"0": 400}}  # type: ignore[union-attr]
    assert ckpt.model_version == original.model_version

    later = events(400, 200)
    expected = run(original, later, copy.deepcopy(states))
    assert len(expected) == len(later) and all(items for _, items in expected)
    got = run(restored, later, copy.deepcopy(states))
    assert same_lists(got, expected)
    # what was restored matters: a core that learned nothing recommends otherwise
    assert not same_lists(run(make_recommender(), later, copy.deepcopy(states)), expected)


def test_truncated_checkpoint_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path, keep=3)

    def files(payload: bytes):  # type: ignore[no-untyped-def]
        return lambda d: (d / "weights.bin").write_bytes(payload)

    first = store.write(files(b"a" * 1000), model_version="m1", config_digest="c", offsets={})
    second = store.write(files(b"b" * 1000), model_version="m2", config_digest="c", offsets={})
    assert store.latest().model_version == "m2"  # type: ignore[union-attr]
    (second.path / "weights.bin").write_bytes(b"b" * 10)  # truncated (e.g. a disk filled up)
    latest = store.latest()
    assert latest is not None and latest.path == first.path
    assert "truncated or corrupt" in caplog.text
    with pytest.raises(CheckpointError):
        store.verify(second.path)


def test_only_the_newest_checkpoints_are_kept_and_manifests_describe_them(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for n in range(4):
        store.write(lambda d: (d / "x.safetensors").write_bytes(b"x"), model_version=f"m{n}", config_digest="d", offsets={"t": {1: n}})
    assert [p.name for p in store.all()] == ["ckpt-00000003", "ckpt-00000004"]
    manifest = store.latest().manifest  # type: ignore[union-attr]
    assert manifest["model_version"] == "m3" and manifest["config_digest"] == "d"
    assert {"python", "numpy", "fusionrec"} <= set(manifest["libraries"])
    assert manifest["files"]["x.safetensors"]["bytes"] == 1


def test_a_failed_writer_leaves_no_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)

    def broken(directory: Path) -> None:
        (directory / "half").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.write(broken, model_version="m", config_digest="d", offsets={})
    assert store.all() == [] and store.latest() is None
    assert not list(tmp_path.glob(".tmp-ckpt-*"))

"""A restarted worker serves the sequence network of its checkpoint, unless ``model.sequence_model`` was
written after that checkpoint (a file published since wins)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from fakes import build_core, random_sequence_model
from fusionrec.config import Config
from fusionrec.learner.sequence import SequenceModel
from stream.checkpointing import WorkerCheckpointer

PLATFORMS = ("shop", "video")
DIM = 16


def worker_of(tmp_path: Path, path: Path) -> WorkerCheckpointer:
    cfg = Config(platforms=PLATFORMS)
    cfg = cfg.replace(
        model=replace(cfg.model, sequence_model=str(path)), worker=replace(cfg.worker, data_dir=str(tmp_path / "data"))
    )
    rec = build_core(PLATFORMS, dim=DIM, cfg=cfg)
    rec.install_sequence_model(SequenceModel.load(path))  # what the composition root does
    return WorkerCheckpointer(cfg, rec)


def set_mtime(path: Path, seconds: float) -> None:
    os.utime(path, (seconds, seconds))


def test_the_checkpoints_network_is_served_unless_the_file_is_newer(tmp_path: Path) -> None:
    path = tmp_path / "seq.npz"
    random_sequence_model(version=1).save(path)
    first = worker_of(tmp_path, path)
    first.rec.install_sequence_model(random_sequence_model(version=6, seed=2))  # fine-tuned, not written out
    ckpt = first.write()
    assert SequenceModel.load(path).version == 1
    set_mtime(path, ckpt.created_at - 60)  # the file is older than the checkpoint
    again = worker_of(tmp_path, path)
    assert again.restore() is not None
    assert again.rec.sequence_model is not None and again.rec.sequence_model.version == 6
    random_sequence_model(version=0, seed=3).save(path)  # a new network published after the checkpoint
    set_mtime(path, ckpt.created_at + 60)
    newer = worker_of(tmp_path, path)
    newer.restore()
    assert newer.rec.sequence_model is not None and newer.rec.sequence_model.version == 0

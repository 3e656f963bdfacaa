"""The worker follows ``model.sequence_model``: a newer file replaces the served model, a bad one does not."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fakes import build_core
from fusionrec.config import Config
from fusionrec.evaluation.sasrec import SASRec, SASRecConfig
from fusionrec.learner.sequence import SequenceModel
from stream.sequence_follower import SequenceModelFollower

DIM = 8


def random_model(version: int, seed: int) -> SequenceModel:
    torch.manual_seed(seed)
    net = SASRec(3, 2, SASRecConfig(dim=8, heads=2, blocks=1, max_len=20, item_text="only"), torch.zeros(4, DIM))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    return SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["shop", "video"], heads=2, version=version)


def follower_of(path: Path, every_s: float = 30.0) -> tuple[SequenceModelFollower, object]:
    rec = build_core(("shop", "video"), items=[], dim=DIM)
    rec.install_sequence_model(SequenceModel.load(path))  # what the composition root does
    cfg = Config(platforms=("shop", "video"))
    cfg = cfg.replace(model=replace(cfg.model, sequence_model=str(path), sequence_model_check_s=every_s))
    return SequenceModelFollower(cfg, rec), rec


def bump(path: Path, seconds: int) -> None:
    """A later modification time, as a trainer's rename a little later gives (coarse clocks)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_a_newer_file_is_served_and_an_unchanged_one_is_not_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "seq.npz"
    random_model(1, seed=0).save(path)
    follower, rec = follower_of(path)
    assert not asyncio.run(follower.check())  # the file it serves
    random_model(2, seed=1).save(path)  # renamed over the old one
    bump(path, 5)
    assert asyncio.run(follower.check())
    served = rec.sequence_model
    assert served is not None and served.version == 2
    np.testing.assert_array_equal(served.adaptor_w, random_model(2, seed=1).adaptor_w)
    assert not asyncio.run(follower.check()) and follower.reloads == 1
    assert not list(tmp_path.glob(".*.part"))  # save leaves only the file


def test_a_file_that_does_not_load_keeps_the_served_model(tmp_path: Path) -> None:
    path = tmp_path / "seq.npz"
    random_model(1, seed=0).save(path)
    follower, rec = follower_of(path)
    path.write_bytes(b"half a file")
    bump(path, 5)
    assert not asyncio.run(follower.check())
    assert rec.sequence_model is not None and rec.sequence_model.version == 1
    path.unlink()  # gone: nothing to serve anew, the served one stays
    assert not asyncio.run(follower.check()) and rec.sequence_model.version == 1


def test_no_file_or_no_interval_means_no_following(tmp_path: Path) -> None:
    rec = build_core(("shop", "video"), items=[], dim=DIM)
    follower = SequenceModelFollower(Config(platforms=("shop", "video")), rec)
    assert follower.path is None and not asyncio.run(follower.check())
    asyncio.run(asyncio.wait_for(follower.run(), 1.0))  # returns at once
    path = tmp_path / "seq.npz"
    random_model(1, seed=0).save(path)
    off, _ = follower_of(path, every_s=0.0)
    asyncio.run(asyncio.wait_for(off.run(), 1.0))


def test_a_negative_interval_is_a_config_error() -> None:
    import pytest

    from fusionrec.config import load_config
    from fusionrec.errors import ConfigError

    with pytest.raises(ConfigError, match="sequence_model_check_s"):
        load_config(env={"FUSIONREC_PLATFORMS": "shop", "FUSIONREC_SEQUENCE_MODEL_CHECK_S": "-1"})

"""The worker's background fine-tuning of the served sequence model (``stream.sequence_tuner``): a round
trains on the people seen since the last one, serves and writes what beat the served weights."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from fakes import build_core, cycle_walks, random_sequence_model
from fusionrec.config import Config, validate
from fusionrec.errors import ConfigError
from fusionrec.learner.sequence import SequenceModel
from stream.sequence_follower import SequenceModelFollower
from stream.sequence_tuner import SequenceFineTuner

PLATFORMS = ("shop", "video")
DIM = 16


def tuner_of(path: Path, **model: object) -> tuple[SequenceFineTuner, SequenceModelFollower, object]:
    cfg = Config(platforms=PLATFORMS)
    cfg = cfg.replace(model=replace(cfg.model, sequence_model=str(path), sequence_finetune_every_s=60.0, **model))
    rec = build_core(PLATFORMS, dim=DIM, cfg=cfg)
    rec.install_sequence_model(SequenceModel.load(path))  # what the composition root does
    follower = SequenceModelFollower(cfg, rec)
    return SequenceFineTuner(cfg, rec, follower), follower, rec


def test_a_round_serves_writes_and_adopts_the_network_that_learned_the_people_seen(tmp_path: Path) -> None:
    path = tmp_path / "seq.npz"
    random_sequence_model(version=3).save(path)
    tuner, follower, rec = tuner_of(path, sequence_finetune_epochs=15, sequence_finetune_min_people=100)
    assert tuner.enabled
    states = cycle_walks(rec, 300)
    tuner.saw(dict(list(states.items())[:50]))
    assert asyncio.run(tuner.round()) is None and len(tuner.recent) == 50  # too few people yet: kept for later
    tuner.saw(dict(states))
    done = asyncio.run(tuner.round())
    assert done is not None and done.people == 300 and tuner.recent == {}
    assert done.improved and tuner.served == 1 and rec.sequence_model is not None and rec.sequence_model.version == 4
    assert SequenceModel.load(path).version == 4  # written over the served file...
    assert not asyncio.run(follower.check())  # ...and not loaded again by this worker
    assert not list(tmp_path.glob(".*.part"))


def test_the_people_first_seen_go_first_past_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "seq.npz"
    random_sequence_model().save(path)
    tuner, _, _ = tuner_of(path, sequence_finetune_people=3)
    tuner.saw({"a": b"1", "b": b"2"})
    tuner.saw({"a": b"3", "c": b"4", "d": b"5"})
    assert tuner.recent == {"b": b"2", "c": b"4", "d": b"5"}


def test_fine_tuning_needs_a_network_to_start_from_and_is_off_by_default(tmp_path: Path) -> None:
    cfg = Config(platforms=PLATFORMS)
    assert cfg.model.sequence_finetune_every_s == 0 and not SequenceFineTuner(cfg, build_core(PLATFORMS, dim=DIM)).enabled
    with pytest.raises(ConfigError, match="needs model.sequence_model"):
        validate(cfg.replace(model=replace(cfg.model, sequence_finetune_every_s=60.0)))
    with pytest.raises(ConfigError, match="sequence_finetune_epochs"):
        validate(cfg.replace(model=replace(cfg.model, sequence_finetune_epochs=0)))


def test_a_network_the_follower_served_while_the_round_trained_stays(tmp_path: Path) -> None:
    path = tmp_path / "seq.npz"
    random_sequence_model(version=3).save(path)
    tuner, _, rec = tuner_of(path, sequence_finetune_epochs=15, sequence_finetune_min_people=100)
    inner = tuner._train

    def train_while_a_trainer_publishes(*args: object) -> object:
        done = inner(*args)  # type: ignore[arg-type]
        rec.install_sequence_model(random_sequence_model(version=0, seed=5))  # the follower, meanwhile: one trained from scratch
        return done

    tuner._train = train_while_a_trainer_publishes  # type: ignore[assignment,method-assign]
    tuner.saw(dict(cycle_walks(rec, 300)))
    done = asyncio.run(tuner.round())
    assert done is not None and done.improved and done.model is not None and done.model.version == 4
    assert rec.sequence_model is not None and rec.sequence_model.version == 0 and tuner.served == 0
    assert SequenceModel.load(path).version == 3  # nothing written

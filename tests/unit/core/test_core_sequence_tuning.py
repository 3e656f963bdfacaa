"""Fine-tuning the served sequence model on the journeys the core stored (``learner.sequence_tuning``),
and the network in the learner's checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import DictStates, build_core, cycle_walks, random_sequence_model
from fusionrec.contracts import BehaviorEvent, ItemDelete
from fusionrec.core import SEQUENCE_FILE
from fusionrec.evaluation.sasrec import SASRecConfig, network_config, training_device
from fusionrec.errors import ConfigError
from fusionrec.learner.sequence_tuning import fine_tune, journeys

PLATFORMS = ("shop", "video")
DIM = 16


def test_journeys_are_the_stored_positive_items_as_ids_oldest_first() -> None:
    rec = build_core(PLATFORMS, dim=DIM)
    states = DictStates()
    # one person on two platforms; a one-star rating pushes away: not part of the journey
    events = [BehaviorEvent(f"e{t}", 10.0 + t, p, f"u-{p}", i, kind, value, person_id="u") for t, (p, i, kind, value) in enumerate(
        [("shop", "s3", "click", None), ("video", "v1", "click", None), ("shop", "s4", "rating", 1.0), ("shop", "s5", "click", None)])]  # fmt: skip
    rec.process(events, states, rank=False)
    rec.process([BehaviorEvent("e9", 20.0, "shop", "w", "s1", "click")], states, rank=False)
    assert journeys(states.values(), rec.store) == [["s3", "v1", "s5"]]  # w's one item trains nothing
    rec.apply_items([ItemDelete("v1", "video")])  # an item deleted since: left out
    assert journeys(states.values(), rec.store) == [["s3", "s5"]]


@pytest.mark.parametrize("item_text", ["only", "add"])
def test_network_config_fits_the_served_weights(item_text: str) -> None:
    served = random_sequence_model(item_text)
    cfg = network_config(served, epochs=1)
    assert (cfg.dim, cfg.heads, cfg.blocks, cfg.max_len, cfg.item_text, cfg.epochs) == (DIM, 2, 1, 20, item_text, 1)


def test_a_round_that_learns_the_walks_returns_the_next_version_and_one_that_cannot_keeps_the_served() -> None:
    rec = build_core(PLATFORMS, dim=DIM)
    states = cycle_walks(rec, 300)
    served = random_sequence_model()
    people = journeys(states.values(), rec.store)
    assert len(people) == 300
    done = fine_tune(rec.store.snapshot(), served, people, epochs=15, lr=5e-3, dropout=0.1, threads=1, min_train_s=60.0)
    assert done.improved and done.model is not None and done.model.version == served.version + 1
    assert done.people == 300 and done.positions > 0 and done.info["device"] == str(training_device("auto"))
    curve = done.info["valid_curve"]
    assert curve[0] < 0.2 < done.info["best_valid_ndcg@10"]  # the served (random) weights, then the walks learned
    # lr 0: no epoch can beat the weights it starts from
    still = fine_tune(rec.store.snapshot(), served, people, epochs=1, lr=0.0, threads=1)
    assert not still.improved and still.model is None
    assert not fine_tune(rec.store.snapshot(), served, [], epochs=1).improved


def test_the_training_device_is_checked() -> None:
    with pytest.raises(ConfigError):
        SASRecConfig(device="tpu")
    assert training_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert training_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="no GPU"):
            training_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_round_trains_on_the_gpu_and_serves_numpy_weights() -> None:
    rec = build_core(PLATFORMS, dim=DIM)
    people = journeys(cycle_walks(rec, 300).values(), rec.store)
    done = fine_tune(rec.store.snapshot(), random_sequence_model("add"), people, epochs=15, lr=5e-3, dropout=0.1, device="cuda")
    assert done.info["device"].startswith("cuda") and done.model is not None
    assert isinstance(done.model.adaptor_w, np.ndarray) and done.model.id_emb is not None


def test_the_checkpoint_holds_the_served_network(tmp_path: Path) -> None:
    rec = build_core(PLATFORMS, dim=DIM)
    rec.install_sequence_model(random_sequence_model(version=4, seed=1))
    rec.save_checkpoint(str(tmp_path / "a"))
    saved = rec.checkpointed_sequence_model(str(tmp_path / "a"))
    assert saved is not None and saved.version == 4
    np.testing.assert_array_equal(saved.adaptor_w, random_sequence_model(version=4, seed=1).adaptor_w)
    bare = build_core(PLATFORMS, dim=DIM)
    bare.save_checkpoint(str(tmp_path / "b"))  # nothing served: nothing held
    assert not (tmp_path / "b" / SEQUENCE_FILE).exists() and bare.checkpointed_sequence_model(str(tmp_path / "b")) is None

"""The online learner: checkpoints (safetensors) restore what was learned; person state keeps its sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, ItemUpsert
from fusionrec.core import Recommender
from fusionrec.fusion import PersonState
from fakes import HashEncoder
from index.faiss_index import ItemIndex

DIM = 8


def FakeEncoder() -> HashEncoder:  # noqa: N802  (reads like the class it stands for)
    return HashEncoder(DIM, "fake")


def make() -> Recommender:
    rec = Recommender(Config(platforms=("shop",)), FakeEncoder(), ItemIndex(DIM, device="cpu"))
    rec.learner.publish_every = 4
    rec.apply_items([ItemUpsert(f"i{n}", "shop", f"item {n}") for n in range(40)])
    return rec


def feed(rec: Recommender) -> dict[str, PersonState]:
    states: dict[str, PersonState] = {}
    rng = np.random.default_rng(1)
    events = [
        BehaviorEvent(f"e{n}", 1.6e9 + n, "shop", f"u{n % 5}", f"i{int(rng.integers(0, 40))}", "click") for n in range(200)
    ]
    for s in range(0, len(events), 16):
        rec.process(events[s : s + 16], states.get, states.__setitem__)
    return states


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    rec = make()
    states = feed(rec)
    rec.save_checkpoint(str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "learner.safetensors").exists()
    assert (tmp_path / "ckpt" / "manifest.json").exists()
    again = make()
    again.load_checkpoint(str(tmp_path / "ckpt"))
    for p, w in rec.learner.weights.items():
        np.testing.assert_allclose(again.learner.weights[p], w)
    state = states["shop:u1"]
    assert rec.rank(state, "shop", 1.6e9 + 300) == again.rank(state, "shop", 1.6e9 + 300)


def test_weights_move_only_at_publication() -> None:
    rec = make()
    feed(rec)
    assert rec.learner.weights  # learned something
    assert rec.learner.published_version > 0


def test_person_state_keeps_its_cross_platform_sequence() -> None:
    rec = make()
    states = feed(rec)
    s = states["shop:u0"]
    assert s.seq and PersonState.from_bytes(s.to_bytes()).seq == s.seq
    old = PersonState.from_bytes(b'{"p":"x","t":null,"c":[],"e":[],"pr":{}}')  # written before seq existed
    assert old.seq == []

"""The online learner: checkpoints (safetensors) restore what was learned; person state keeps its sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes import DictStates, build_core
from fusionrec.contracts import BehaviorEvent, ItemUpsert
from fusionrec.core import Recommender
from fusionrec.errors import DecodeError
from fusionrec.learner.model import INITIAL_WEIGHTS
from fusionrec.state import PersonState

DIM = 8


def make(publish_every: int = 4) -> Recommender:
    rec = build_core(("shop",), items=[ItemUpsert(f"i{n}", "shop", f"item {n}") for n in range(40)], dim=DIM)
    rec.learner.publish_every = publish_every
    return rec


def feed(rec: Recommender) -> DictStates:
    states = DictStates()
    rng = np.random.default_rng(1)
    events = [
        BehaviorEvent(f"e{n}", 1.6e9 + n, "shop", f"u{n % 5}", f"i{int(rng.integers(0, 40))}", "click") for n in range(200)
    ]
    for s in range(0, len(events), 16):
        rec.process(events[s : s + 16], states)
    return states


def ranked(rec: Recommender, states: DictStates, person: str, now: float) -> list[list[dict]]:  # type: ignore[type-arg]
    return [items for items, _ in rec.rank(rec.requests_for(states, [person], ["shop"], [now]))]


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
    mine = ranked(rec, states, "shop:u1", 1.6e9 + 300)
    assert mine[0] and mine == ranked(again, states, "shop:u1", 1.6e9 + 300)
    assert mine != ranked(make(), states, "shop:u1", 1.6e9 + 300)  # what the checkpoint carries matters


def test_weights_move_only_at_publication() -> None:
    rec = make()
    feed(rec)
    assert rec.learner.weights  # learned something
    assert rec.learner.published_version > 0
    # between two publications the ranker's weights stay put while the live ones learn
    slow = make(publish_every=10_000)
    feed(slow)
    assert not np.allclose(slow.learner.weights["shop"], INITIAL_WEIGHTS)
    np.testing.assert_array_equal(slow.learner.model.platforms["shop"].weights, INITIAL_WEIGHTS)
    slow.learner.publish()
    np.testing.assert_array_equal(slow.learner.model.platforms["shop"].weights, slow.learner.weights["shop"])


def test_person_state_keeps_its_cross_platform_sequence() -> None:
    rec = make()
    states = feed(rec)
    s = states.state("shop:u0")
    assert s is not None and s.seq and PersonState.from_bytes("shop:u0", s.to_bytes()).seq == s.seq
    # a state in the JSON form of earlier versions does not decode: the core says so, it never guesses
    with pytest.raises(DecodeError) as info:
        PersonState.from_bytes("x", b'{"p":"x","t":null,"c":[],"e":[],"pr":{}}')
    assert info.value.reason == "bad_state"

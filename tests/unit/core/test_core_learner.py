"""The online learner's ranking: batched scores are the features times the weights, new items are
told apart, learned and handed to the policy, and an earlier feature set's checkpoint still loads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusionrec import learning
from fusionrec.errors import CheckpointError
from fusionrec.learning import FEATURES, INITIAL_WEIGHTS, NEW, OnlineLearner, RankRequest

DIM = 8
N = 30
T0 = 1.6e9


def unit_rows(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_learner() -> OnlineLearner:
    learner = OnlineLearner(DIM, publish_every=10_000)
    learner.catalog.upsert([f"i{n}" for n in range(N)], ["shop"] * N, unit_rows(N, 0))
    return learner


def request(learner: OnlineLearner, seq: tuple[str, ...], consumed: frozenset[str] = frozenset()) -> RankRequest:
    fused = np.mean([learner.catalog.vector(i) for i in seq], axis=0).astype(np.float32)
    fused /= np.linalg.norm(fused)
    return RankRequest("shop", fused, fused, seq, consumed)


def play(learner: OnlineLearner, sequences: list[list[str]]) -> None:
    """Each sequence is one person's positive events, learned in order (test-then-train)."""
    ts = T0
    for seq in sequences:
        for n, item in enumerate(seq):
            ts += 60.0
            req = request(learner, tuple(seq[:n])) if n else RankRequest("shop", None, None, (), frozenset())
            learner.observe(req, item, ts, positive=True)


@pytest.mark.parametrize("dense_share", [0.0, 1.0], ids=["dense", "block"])
def test_batched_scores_are_the_feature_rows_times_the_published_weights(monkeypatch: pytest.MonkeyPatch, dense_share: float) -> None:
    """Both ways of adding the new-item scores (over the whole catalog, or the cached block of new items)."""
    monkeypatch.setattr(learning, "NEW_DENSE_SHARE", dense_share)
    learner = make_learner()
    play(learner, [["i0", "i1", "i2", "i3"], ["i1", "i2", "i4"], ["i0", "i2", "i5", "i1"]])
    w = np.random.default_rng(7).normal(size=len(FEATURES))
    learner.pub_weights = {"shop": w}
    reqs = [request(learner, ("i0", "i2")), request(learner, ("i1",)), request(learner, ("i3", "i4", "i5"))]
    rows, scores = learner.batch_scores("shop", reqs)
    assert rows == [0, 1, 2]
    for b, req in enumerate(reqs):
        expected = learner.features(req, np.arange(N)) @ w
        np.testing.assert_allclose(scores[b], expected, rtol=1e-4, atol=1e-4)
    assert learner.features(reqs[0], np.arange(N))[:, NEW].tolist() == [float(n > 5) for n in range(N)]
    # the new-item block cached by that call goes stale: items get their first interaction, one is added
    play(learner, [["i6", "i7"], ["i8", "i20"]])
    for n_items in (N, N + 1):
        if n_items > N:
            learner.catalog.upsert(["i30"], ["shop"], unit_rows(1, 9))
        rows, scores = learner.batch_scores("shop", reqs)
        for b, req in enumerate(reqs):
            expected = learner.features(req, np.arange(n_items)) @ w
            np.testing.assert_allclose(scores[b], expected, rtol=1e-4, atol=1e-4)
    new = learner.features(reqs[0], np.arange(N + 1))[:, NEW]
    assert new.tolist() == [float(n > 8 and n != 20) for n in range(N + 1)]


def test_an_item_stops_being_new_at_its_first_positive_interaction_only() -> None:
    learner = make_learner()
    assert learner.is_new("shop", ["i0", "i1"]).all()
    learner.observe(RankRequest("shop", None, None, (), frozenset()), "i0", T0, positive=True)
    learner.observe(RankRequest("shop", None, None, (), frozenset()), "i1", T0, positive=False)
    assert learner.is_new("shop", ["i0", "i1", "elsewhere"]).tolist() == [False, True, False]
    learner.catalog.delete(["i1"])
    assert not learner.is_new("shop", ["i1"]).any()  # deleted: not recommendable at all
    assert learner.new_mask("shop", N).sum() == N - 2


def test_rank_appends_the_best_new_items_below_the_top_k() -> None:
    learner = make_learner()
    play(learner, [[f"i{n}" for n in range(10)]])
    learner.pub_weights = {"shop": np.array([1.0, 0, 0, 0, 0, 0, 5.0, 0, 0, 0, 0])}  # seen items first
    req = request(learner, ("i0", "i1"), consumed=frozenset({"i0", "i1", "i12"}))
    plain = learner.rank([req], 5)[0]
    extended = learner.rank([req], 5, new_items=2)[0]
    assert extended[:5] == plain
    assert all(int(i[1:]) < 10 for i, _ in plain)  # the popularity weight put seen items on top
    tail = extended[5:]
    assert len(tail) == 2 and all(int(i[1:]) >= 10 for i, _ in tail) and "i12" not in dict(tail)
    scores = [s for _, s in extended]
    assert scores == sorted(scores, reverse=True)
    n_new = learner.new_mask("shop", N)
    best = max((i for i in range(N) if n_new[i] and i != 12), key=lambda i: float(learner.catalog.mats["shop"][i] @ req.fused))
    assert tail[0][0] == f"i{best}"


def test_the_new_item_weight_is_learned_from_a_stream_that_keeps_picking_new_items() -> None:
    learner = make_learner()
    learner.negatives = 16
    learner.train_every = 1
    order = np.random.default_rng(3).permutation(N).tolist()
    # ten people, each picking three items nobody has picked before: every positive is a new item
    play(learner, [[f"i{order[3 * p + j]}" for j in range(3)] for p in range(10)])
    learner.publish()
    assert learner.weights_of("shop")[NEW] > 0


def test_a_checkpoint_of_the_earlier_feature_set_loads_with_the_missing_features_at_their_start() -> None:
    learner = make_learner()
    play(learner, [["i0", "i1", "i2", "i3"], ["i1", "i2", "i4"]] * 4)
    tensors, meta = learner.state_dict()
    old = FEATURES[:8]  # the feature set before the new-item features
    tensors["weights.shop"] = tensors["weights.shop"][:8]
    tensors["grad_sq.shop"] = tensors["grad_sq.shop"][:8]
    meta["features"] = json.dumps(old)
    again = make_learner()
    again.load_state_dict(tensors, meta)
    np.testing.assert_allclose(again.weights["shop"][:8], learner.weights["shop"][:8])
    np.testing.assert_allclose(again.weights["shop"][8:], INITIAL_WEIGHTS[8:])
    meta["features"] = json.dumps([*old, "something_else"])
    with pytest.raises(CheckpointError, match="something_else"):
        make_learner().load_state_dict(tensors, meta)

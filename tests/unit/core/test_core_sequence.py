"""The served sequence model (numpy) computes what the trained torch network computes, and the core
serves it: requests carry its queries of the cross-platform journey, the ranker learns its weight."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fakes import DictStates, build_core
from fusionrec.config import PolicyConfig
from fusionrec.contracts import BehaviorEvent
from fusionrec.core import Recommender
from fusionrec.errors import ConfigError
from fusionrec.evaluation.sasrec import SASRec, SASRecConfig
from fusionrec.learner.model import SEQ
from fusionrec.learner.sequence import SequenceModel, forward_last

TEXT_DIM, N_ITEMS = 12, 40


def trained_like(platforms: int, blocks: int = 2, seed: int = 0, item_text: str = "only") -> tuple[SASRec, torch.Tensor]:
    """A network with weights far from their tiny initialisation (as after training)."""
    torch.manual_seed(seed)
    cfg = SASRecConfig(dim=16, heads=2, blocks=blocks, max_len=8, item_text=item_text)
    text = torch.randn(N_ITEMS + 1, TEXT_DIM)
    text[0] = 0.0
    net = SASRec(N_ITEMS, platforms, cfg, text)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    return net.eval(), text


def padded(lengths: list[int], platforms: int, L: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    seqs = np.zeros((len(lengths), L), np.int64)
    nxt = np.zeros((len(lengths), L), np.int64)
    for b, n in enumerate(lengths):
        seqs[b, :n] = rng.integers(1, N_ITEMS + 1, n)
        nxt[b, :n] = rng.integers(0, platforms, n)
    return torch.from_numpy(seqs), torch.from_numpy(nxt)


@pytest.mark.parametrize(("platforms", "blocks"), [(1, 2), (3, 2), (2, 1)])
def test_numpy_forward_equals_the_torch_network(platforms: int, blocks: int) -> None:
    net, text = trained_like(platforms, blocks)
    lengths = [1, 3, 8, 5, 2]
    seqs, nxt = padded(lengths, platforms, 8)
    with torch.no_grad():
        hidden = net(seqs, nxt)[torch.arange(len(lengths)), torch.tensor(lengths) - 1].numpy()
        table = net.item_table().numpy()
    names = [f"p{j}" for j in range(platforms)]
    model = SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, names, heads=2)
    mine = forward_last(model, table[seqs.numpy()], np.array(lengths), nxt.numpy())
    np.testing.assert_allclose(mine, hidden, rtol=2e-4, atol=2e-4)


def packed(inputs: np.ndarray, lengths: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded ``(B, L, ...)`` sequences one after another (``SequenceModel.queries``' layout)."""
    real = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
    return inputs[real], lengths, nxt[real]


def test_the_text_query_ranks_items_as_the_network_scores_them() -> None:
    """``(W h) · v_i`` differs from ``h · r_i`` by one constant per request: the same ranking."""
    net, text = trained_like(2)
    lengths = [4, 6]
    seqs, nxt = padded(lengths, 2, 8)
    with torch.no_grad():
        hidden = net(seqs, nxt)[torch.arange(2), torch.tensor(lengths) - 1]
        scores = (hidden @ net.item_table()[1:].T).numpy()
    model = SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["a", "b"], heads=2)
    reps = model.input_reps("a", text.numpy(), store_version=0)
    q = model.queries(*packed(reps[seqs.numpy()], np.array(lengths), nxt.numpy()))
    mine = q @ text[1:].numpy().T
    shift = mine - scores
    np.testing.assert_allclose(shift, shift[:, :1].repeat(N_ITEMS, 1), atol=2e-3)
    assert (np.argsort(-mine, axis=1)[:, :10] == np.argsort(-scores, axis=1)[:, :10]).all()


def test_input_ids_enter_the_sequence_with_their_id_embedding_and_score_by_text() -> None:
    """An ``input_ids`` network: the served inputs are text + ID (rows it was trained with), the
    forward pass equals torch's, the scoring side stays the text adaptor."""
    net, text = trained_like(1, seed=3, item_text="input_ids")
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    with pytest.raises(ConfigError):
        SequenceModel.from_arrays(arrays, ["a"], heads=2)  # the ID embeddings need their rows
    model = SequenceModel.from_arrays(arrays, ["a"], heads=2, id_rows={"a": (1, N_ITEMS - 5)})
    with torch.no_grad():
        full = net.input_table(net.item_table()).numpy()
        text_only = net.item_table().numpy()
    reps = model.input_reps("a", text[1:].numpy(), store_version=0)
    np.testing.assert_allclose(reps[: N_ITEMS - 5], full[1 : N_ITEMS - 4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reps[N_ITEMS - 5 :], text_only[N_ITEMS - 4 :], rtol=1e-5, atol=1e-5)  # no ID row: text alone
    lengths = [2, 7, 4]
    seqs, nxt = padded(lengths, 1, 8)
    seqs = seqs.clamp(max=N_ITEMS - 5)  # items with an ID row
    with torch.no_grad():
        hidden = net(seqs, nxt)[torch.arange(3), torch.tensor(lengths) - 1].numpy()
    mine = forward_last(model, reps[np.maximum(seqs.numpy() - 1, 0)], np.array(lengths), nxt.numpy())
    np.testing.assert_allclose(mine, hidden, rtol=2e-4, atol=2e-4)


def test_item_representations_are_cached_per_store_version() -> None:
    net, text = trained_like(1)
    model = SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["a"], heads=2)
    vectors = text.numpy()
    first = model.input_reps("a", vectors, store_version=3)
    assert model.input_reps("a", vectors, store_version=3) is first
    assert model.input_reps("a", vectors * 2, store_version=4) is not first


def test_only_a_single_expert_network_with_its_id_rows_can_be_served() -> None:
    torch.manual_seed(0)
    text = torch.randn(N_ITEMS + 1, TEXT_DIM)
    for cfg in (SASRecConfig(dim=16, heads=2, max_len=8, item_text="add"), SASRecConfig(dim=16, heads=2, max_len=8, item_text="only", text_experts=2)):
        net = SASRec(N_ITEMS, 1, cfg, text)
        with pytest.raises(ConfigError, match="'only', 'input_ids' or 'add'"):
            SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["a"], heads=2)
    net, _ = trained_like(1)
    with pytest.raises(ConfigError, match="needs them"):
        SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["a"], heads=2, id_out=True)


def test_an_add_network_scores_by_text_query_plus_its_id_part() -> None:
    """``item_text="add"``: ``h · (r_i + e_i)`` is ``(W h) · v_i + h · e_i`` up to one constant per
    request, for the rows with an ID embedding; a row added since the training scores by its text."""
    net, text = trained_like(1, blocks=1, seed=4, item_text="add")
    lengths = [3, 7]
    known = N_ITEMS - 5
    seqs, nxt = padded(lengths, 1, 8)
    seqs = seqs.clamp(max=known)  # the sequence's items have an ID row
    with torch.no_grad():
        hidden = net(seqs, nxt)[torch.arange(2), torch.tensor(lengths) - 1]
        scores = (hidden @ net.item_table()[1:].T).numpy()
        text_only = (hidden @ net.adaptor(net.text)[1:].T).numpy()
    model = SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["a"], heads=2, id_rows={"a": (1, known)}, id_out=True)
    reps = model.input_reps("a", text[1:].numpy(), store_version=0)
    q, h = model.queries_hidden(*packed(reps[np.maximum(seqs.numpy() - 1, 0)], np.array(lengths), nxt.numpy()))
    np.testing.assert_allclose(h, hidden.numpy(), rtol=2e-4, atol=2e-4)
    rows = np.broadcast_to(np.arange(N_ITEMS), (2, N_ITEMS))
    mine = q @ text[1:].numpy().T + model.id_scores("a", h, rows)
    want = np.concatenate([scores[:, :known], text_only[:, known:]], axis=1)
    shift = mine - want
    np.testing.assert_allclose(shift, shift[:, :1].repeat(N_ITEMS, 1), atol=2e-3)
    assert (model.id_scores("a", h, np.array([[-1, known, 0]]).repeat(2, 0))[:, :2] == 0).all()  # none, no ID row
    plain = SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["a"], heads=2, id_rows={"a": (1, known)})
    assert plain.id_table("a") is None and not plain.id_scores("a", h, rows).any()  # input_ids-style: no ID part


def test_the_core_adds_the_id_part_to_its_candidates_and_to_its_training_features() -> None:
    """With an ``id_out`` network the ranking follows ``h · e_i``: an item whose ID embedding points along
    every hidden state comes first once the ``seq`` weight is positive, and not without the ID part."""
    rec = build_core(("shop", "video"), dim=CORE_DIM, policy=PolicyConfig(name="none", new_item_position=0))
    states = DictStates()
    rec.process(journey_events("P", ["s1", "v4", "v2", "s7", "v9"]), states, rank=False)
    rec.process(journey_events("Q", ["s3", "s5", "s8"], start=10), states, rank=False)  # s3: no longer a new item
    rec.learner.publish()
    model = core_model(["shop", "video"])
    n_shop = rec.store.platforms["shop"].n
    reqs = None
    for id_out in (False, True):
        ids = {"shop": np.zeros((n_shop, model.dim), np.float32), "video": np.zeros((1, model.dim), np.float32)}
        model.id_emb, model.id_out = ids, id_out
        rec.install_sequence_model(model)
        reqs = rec.requests_for(states, ["P"], ["shop"], [T0 + 99])
        assert reqs.seq_hidden is not None
        star = rec.store.row_of("s3")
        ids["shop"][star] = 50.0 * reqs.seq_hidden[0] / np.linalg.norm(reqs.seq_hidden[0])
        rec.install_sequence_model(model)
        rec.learner.model.platforms["shop"].weights[SEQ] = 1.0
        top = rec.rank_ids(rec.requests_for(states, ["P"], ["shop"], [T0 + 99]), k=3)[0]
        assert (top[0] == "s3") == id_out
    assert reqs is not None
    from fusionrec.learner.features import features_at

    platform_model = rec.learner.model.platforms["shop"]
    items = rec.store.platforms["shop"]
    zeros = np.zeros((1, CORE_DIM), np.float32)
    args = (platform_model, items.vectors, zeros, zeros, zeros, [[]], np.array([star]), np.array([0, star]))
    q = reqs.seq_query
    assert q is not None
    without = features_at(*args, seq=q)
    with_ids = features_at(*args, seq=q, seq_ids=ids["shop"], seq_hidden=reqs.seq_hidden)
    expected = ids["shop"][[star, 0, star]] @ reqs.seq_hidden[0]
    np.testing.assert_allclose(with_ids[0, :, SEQ] - without[0, :, SEQ], expected, rtol=1e-5, atol=1e-4)
    from fusionrec.pipeline.candidates import exhaustive_scores

    again = rec.requests_for(states, ["P"], ["shop"], [T0 + 99])  # the measurement reference scores as the core ranks
    assert int(np.argmax(exhaustive_scores(platform_model, items, again, ids["shop"]))) == star


# --- served by the core ------------------------------------------------------------------------------

CORE_DIM = 16
T0 = 1_600_000_000.0


def core_model(platforms: list[str], seed: int = 0) -> SequenceModel:
    """A random text-only network over ``CORE_DIM``-d text vectors, as arrays."""
    torch.manual_seed(seed)
    cfg = SASRecConfig(dim=8, heads=2, blocks=2, max_len=20, item_text="only")
    net = SASRec(3, len(platforms), cfg, torch.zeros(4, CORE_DIM))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    return SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, platforms, heads=2)


def journey_events(person: str, items: list[str], start: int = 0) -> list[BehaviorEvent]:
    return [
        BehaviorEvent(f"{person}-e{start + n}", T0 + start + n, {"s": "shop", "v": "video"}[i[0]], person, i, "click", None, person)
        for n, i in enumerate(items)
    ]


def test_requests_carry_the_sequence_models_query_of_the_cross_platform_journey() -> None:
    rec = build_core(("shop", "video"), dim=CORE_DIM)
    states = DictStates()
    journey = ["s1", "v4", "v2", "s7", "v9"]
    rec.process(journey_events("P", journey), states, rank=False)
    assert rec.requests_for(states, ["P"], ["shop"], [T0 + 99]).seq_query is None  # no model yet
    model = core_model(["video", "shop"])  # trained in another platform order: installed aligned
    rec.install_sequence_model(model)
    reqs = rec.requests_for(states, ["P", "P"], ["shop", "video"], [T0 + 99] * 2)
    served = rec.sequence_model
    assert served is not None and served.platforms == ("shop", "video")
    plat = {"s": 0, "v": 1}
    vectors = rec.store.vectors_of(journey)
    inputs = ((vectors - served.adaptor_b) @ served.adaptor_w)[None].repeat(2, 0)
    nxt = np.array([[plat[i[0]] for i in journey[1:]] + [t] for t in (0, 1)])
    want = served.queries(*packed(inputs.astype(np.float32), np.array([5, 5]), nxt))
    assert reqs.seq_query is not None
    np.testing.assert_allclose(reqs.seq_query, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(reqs.seq_query[0], reqs.seq_query[1])  # the asked platform is an input


def test_restricted_to_the_target_platform_the_journey_holds_its_items_only() -> None:
    """``--restrict-to-target-platform``: the sequence model reads the target platform's part of the
    journey, as if the person had done nothing elsewhere."""
    journey = ["s1", "v4", "v2", "s7", "v9"]
    queries = []
    for restrict, items in ((True, journey), (False, ["s1", "s7"])):
        rec = build_core(("shop", "video"), dim=CORE_DIM, restrict_to_target_platform=restrict)
        states = DictStates()
        rec.process(journey_events("P", items), states, rank=False)
        rec.install_sequence_model(core_model(["shop", "video"]))
        queries.append(rec.requests_for(states, ["P"], ["shop"], [T0 + 99]).seq_query)
    np.testing.assert_allclose(queries[0], queries[1], rtol=1e-5, atol=1e-6)


def test_the_seq_weight_is_learned_only_with_a_model_installed() -> None:
    rng = np.random.default_rng(0)
    items = [f"s{i}" for i in range(30)] + [f"v{i}" for i in range(30)]

    def learn(rec: Recommender, tag: str) -> None:
        states = DictStates()
        events = [e for p in range(60) for e in journey_events(f"{tag}{p}", list(rng.choice(items, 8)), start=10 * p)]
        for s in range(0, len(events), 64):
            rec.process(events[s : s + 64], states, rank=False)
        rec.learner.publish()

    plain = build_core(("shop", "video"), dim=CORE_DIM)
    learn(plain, "a")
    assert all(w[SEQ] == 0.0 for w in plain.learner.weights.values())
    with_model = build_core(("shop", "video"), dim=CORE_DIM)
    with_model.install_sequence_model(core_model(["shop", "video"]))
    learn(with_model, "b")
    assert any(w[SEQ] != 0.0 for w in with_model.learner.weights.values())


def test_a_saved_model_loads_to_the_same_queries(tmp_path: Any) -> None:
    net, text = trained_like(2)
    model = SequenceModel.from_arrays({k: v.numpy() for k, v in net.state_dict().items()}, ["a", "b"], heads=2, version=7)
    model.save(tmp_path / "seq.npz")
    back = SequenceModel.load(tmp_path / "seq.npz")
    assert (back.platforms, back.heads, back.version, back.id_emb) == (("a", "b"), 2, 7, None)
    lengths = np.array([3, 8])
    seqs, nxt = padded(lengths.tolist(), 2, 8)
    inputs = model.input_reps("a", text.numpy(), 0)[seqs.numpy()]
    args = packed(inputs, lengths, nxt.numpy())
    np.testing.assert_array_equal(back.queries(*args), model.queries(*args))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a sequence model file"):
        SequenceModel.load(tmp_path / "junk.npz")
    with pytest.raises(ConfigError, match="not a sequence model file"):
        SequenceModel.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("id_out", [False, True])
def test_a_saved_model_with_id_embeddings_keeps_its_id_rows(tmp_path: Any, id_out: bool) -> None:
    model = core_model(["shop", "video"])
    ids = {"video": np.ones((3, model.dim), np.float32), "shop": np.full((2, model.dim), 2.0, np.float32)}
    model.id_emb, model.id_out = ids, id_out
    model.save(tmp_path / "m.npz")
    back = SequenceModel.load(tmp_path / "m.npz")
    assert back.id_emb is not None and set(back.id_emb) == {"shop", "video"}
    assert back.id_out is id_out
    assert all(np.array_equal(back.id_emb[p], ids[p]) for p in ids)

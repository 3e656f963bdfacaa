"""SASRec on tiny synthetic sequences: it learns a predictable pattern, excludes consumed items, gives
untrained items no random vectors, and trains each label of a long sequence once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionrec.evaluation.baselines import BaselineRequest
from fusionrec.evaluation.metrics import ndcg_at_k
from fusionrec.evaluation.sasrec import FastDropout, SASRec, SASRecBaseline, SASRecConfig, batch, windows
from fusionrec.items import ItemStore as Catalog

TINY = SASRecConfig(dim=16, blocks=1, heads=1, dropout=0.1, lr=5e-3, batch_size=64, epochs=40, patience=5, threads=1)


def unit_rows(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def catalog_of(platform_items: dict[str, list[str]], vectors: dict[str, np.ndarray] | None = None) -> Catalog:
    cat = Catalog(8)
    for p, ids in platform_items.items():
        vecs = unit_rows(len(ids), seed=len(p))
        for n, i in enumerate(ids):
            if vectors and i in vectors:
                vecs[n] = vectors[i]
        cat.upsert(ids, [p] * len(ids), vecs)
    return cat


def cyclic(ids: list[str], users: int, seed: int = 0) -> list[list[str]]:
    """Each user walks the cycle from a random item: the next item is always the following one."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        start, length = int(rng.integers(len(ids))), int(rng.integers(4, 9))
        out.append([ids[(start + t) % len(ids)] for t in range(length)])
    return out


def fitted(cat: Catalog, seqs: list[list[str]], cfg: SASRecConfig = TINY) -> SASRecBaseline:
    model = SASRecBaseline(cat, cfg)
    model.fit(seqs)
    for u, seq in enumerate(seqs):
        for item in seq:
            model.learn(f"u{u}", item, 0.0, True)
    return model


def test_learns_a_cyclic_sequence() -> None:
    ids = [f"i{j}" for j in range(30)]
    seqs = cyclic(ids, 300)
    model = fitted(catalog_of({"p": ids}), seqs)
    requests = [BaselineRequest(f"u{u}", "p", 0.0, frozenset(s)) for u, s in enumerate(seqs)]
    lists = model.rank(requests, 10)
    nxt = [ids[(ids.index(s[-1]) + 1) % len(ids)] for s in seqs]
    assert np.mean([ndcg_at_k(lst, {n}, 10) for lst, n in zip(lists, nxt)]) > 0.9
    info = model.info()
    assert info["best_valid_ndcg@10"] > 0.9 and 1 <= info["best_epoch"] <= info["epochs"] <= TINY.epochs
    assert info["loss"] == {"p": "full"} and info["examples"] > 0


def test_target_platform_and_sampled_softmax() -> None:
    """Two platforms alternating a_j, b_j, a_j+1, ...; the platform asked for is an input, only its
    items are ranked, and a platform over ``full_softmax_max`` trains with sampled negatives."""
    n = 20
    a, b = [f"a{j}" for j in range(n)], [f"b{j}" for j in range(n)]
    rng = np.random.default_rng(1)
    seqs = []
    for _ in range(300):
        start, length = int(rng.integers(n)), int(rng.integers(3, 6))
        seqs.append([x for t in range(length) for x in (a[(start + t) % n], b[(start + t) % n])])
    cfg = SASRecConfig(**{**TINY.__dict__, "full_softmax_max": 10, "negatives": 16})
    model = fitted(catalog_of({"a": a, "b": b}), seqs, cfg)
    assert model.info()["loss"] == {"a": "sampled:16+logQ", "b": "sampled:16+logQ"}
    requests = [BaselineRequest(f"u{u}", "a", 0.0, frozenset(s)) for u, s in enumerate(seqs)]
    lists = model.rank(requests, 10)
    assert all(item.startswith("a") for lst in lists for item in lst)
    nxt = [a[(int(s[-1][1:]) + 1) % n] for s in seqs]  # the last item is b_j: the next a is a_j+1
    assert np.mean([ndcg_at_k(lst, {x}, 10) for lst, x in zip(lists, nxt)]) > 0.8


def test_consumed_items_are_excluded() -> None:
    ids = [f"i{j}" for j in range(30)]
    seqs = cyclic(ids, 100)
    model = fitted(catalog_of({"p": ids}), seqs, SASRecConfig(**{**TINY.__dict__, "epochs": 2}))
    everything = model.rank([BaselineRequest("u0", "p", 0.0, frozenset())], 30)[0]
    banned = frozenset(everything[:5])
    ranked = model.rank([BaselineRequest("u0", "p", 0.0, banned)], 30)[0]
    assert not banned & set(ranked) and ranked == everything[5:]


def test_untrained_items_get_text_vectors_not_random_ones() -> None:
    """Items no training sequence holds: the same text gives the same vector (a random init would
    not), other text another one, and no text ranks the item last."""
    ids = [f"i{j}" for j in range(30)]
    shared = unit_rows(1, seed=99)[0]
    cat = catalog_of(
        {"p": [*ids, "new0", "new1", "new2", "blank"]},
        {"new0": shared, "new1": shared, "blank": np.zeros(8, np.float32)},
    )
    model = fitted(cat, cyclic(ids, 200), SASRecConfig(**{**TINY.__dict__, "epochs": 3}))
    assert model.table is not None
    row = {i: model.table[model.vocab[i]] for i in ("new0", "new1", "new2", "i0")}
    assert torch.equal(row["new0"], row["new1"])
    assert not torch.allclose(row["new0"], row["new2"])
    assert not bool(model.trained[model.vocab["new0"]]) and bool(model.trained[model.vocab["i0"]])
    ranked = model.rank([BaselineRequest("u0", "p", 0.0, frozenset())], cat.size("p"))[0]
    assert ranked[-1] == "blank"


def test_windows_train_every_label_once_with_context() -> None:
    seq = np.arange(1, 121, dtype=np.int64)  # 120 items: 119 labels
    win = windows([seq, np.array([5, 6, 7], np.int64), np.array([9], np.int64)], max_len=50)
    labels: list[int] = []
    for items, length, first in zip(win.items, win.length, win.loss_from):
        for t in range(int(first), int(length) - 1):
            labels.append(int(items[t + 1]))
            if items[t + 1] > 51:  # far enough in to have that much context
                assert t >= 25
    assert sorted(labels) == sorted([*range(2, 121), 6, 7])
    assert win.examples == len(labels)


def test_a_window_reads_the_same_in_any_batch() -> None:
    """Positions count back from the last input: a short window padded in a batch with a longer one
    must give the same states as alone (its last item is a label, never an input)."""
    win = windows([np.array([1, 2, 3], np.int64), np.array([4, 5, 6, 7, 8, 9], np.int64)], max_len=10)
    model = SASRec(9, 1, TINY).eval()
    inputs, labels, keep = batch(win, np.array([0, 1]))
    alone, alone_labels, _ = batch(win, np.array([0]))
    assert inputs[0].tolist() == [1, 2, 0, 0, 0] and labels[0].tolist() == [2, 3, 0, 0, 0]
    assert keep[0].tolist() == [True, True, False, False, False] and keep[1].all()
    with torch.no_grad():
        assert torch.allclose(model(inputs)[0, :2], model(alone)[0, :2], atol=1e-6)


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_fast_dropout_keeps_the_expected_share(p: float) -> None:
    drop = FastDropout(p)
    x = torch.ones(100_000)
    y = drop(x)
    assert abs(float((y > 0).float().mean()) - (1 - p)) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.02
    drop.eval()
    assert torch.equal(drop(x), x)


@pytest.mark.parametrize("mode", ["add", "only"])
def test_items_through_their_text_learn_and_reach_new_items(mode: str) -> None:
    """With the text adaptor the cyclic walk is still learned, and an item no sequence holds gets the
    adaptor's vector: the same text, the same vector; another text, another."""
    ids = [f"i{j}" for j in range(30)]
    shared = unit_rows(1, seed=99)[0]
    cat = catalog_of({"p": [*ids, "new0", "new1", "new2"]}, {"new0": shared, "new1": shared})
    seqs = cyclic(ids, 300)
    model = fitted(cat, seqs, SASRecConfig(**{**TINY.__dict__, "item_text": mode, "text_experts": 2}))
    assert (model.model is not None and model.model.adaptor is not None) and (model.model.item is None) == (mode == "only")
    requests = [BaselineRequest(f"u{u}", "p", 0.0, frozenset(s)) for u, s in enumerate(seqs)]
    nxt = [ids[(ids.index(s[-1]) + 1) % len(ids)] for s in seqs]
    assert np.mean([ndcg_at_k(lst, {n}, 10) for lst, n in zip(model.rank(requests, 10), nxt)]) > 0.8
    assert model.table is not None
    row = {i: model.table[model.vocab[i]] for i in ("new0", "new1", "new2")}
    assert torch.equal(row["new0"], row["new1"]) and not torch.allclose(row["new0"], row["new2"])


def test_item_text_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="item_text"):
        SASRecConfig(item_text="both")
    with pytest.raises(ValueError, match="text_experts"):
        SASRecConfig(text_experts=0)

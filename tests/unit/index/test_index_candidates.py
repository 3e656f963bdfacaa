"""CandidateIndex (``index/candidates.py``), the core's candidate search over the item store's rows:
top-k by inner product against brute force, allowed-mask filtering, dead rows never returned, short
lists padded with -1 / -inf, exact below ``exact_max`` live rows and IVF above it (trained on the
centred vectors, scores still ``q · v``) and exact again once deletes bring it back to ``exact_max``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionrec.errors import IndexError_
from fusionrec.items import ItemStore
from fusionrec.topk import exact_top_k
from index.candidates import CandidateIndex, IndexSettings, resolve_device

DIM = 16


def unit(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors sharing a large common direction, as text embeddings do (|mean| ~ 0.8)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=DIM)
    mu /= np.linalg.norm(mu)
    v = mu + 0.6 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def store_with(vectors: np.ndarray, *, exact_max: int = 10_000, nprobe: int = 16) -> tuple[ItemStore, CandidateIndex]:
    """An item store of one platform ``p`` with a candidate index (the core's wiring), rows 0..n-1."""
    settings_ = IndexSettings(exact_max=exact_max, nprobe=nprobe)
    store = ItemStore(DIM, lambda dim, view: CandidateIndex(dim, view, settings_))
    store.upsert([f"i{r}" for r in range(len(vectors))], ["p"] * len(vectors), vectors)
    index = store.platforms["p"].index
    assert isinstance(index, CandidateIndex)
    return store, index


def brute(vectors: np.ndarray, ok: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)`` of the top-``k`` rows where ``ok``, best first, padded with -inf / -1."""
    scores = q @ vectors.T
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_r = np.full((len(q), k), -1, np.int64)
    rows = np.flatnonzero(ok)
    for b in range(len(q)):
        order = rows[np.argsort(-scores[b, rows], kind="stable")][:k]
        out_s[b, : len(order)], out_r[b, : len(order)] = scores[b, order], order
    return out_s, out_r


def check_exact(got: tuple[np.ndarray, np.ndarray], vectors: np.ndarray, ok: np.ndarray, q: np.ndarray, k: int) -> None:
    """``got`` is a top-``k`` over the rows where ``ok``: brute force's scores (padding included), each
    row allowed, once, and carrying its own true score (so ties may list other rows of equal score)."""
    gs, gr = got
    ws, wr = brute(vectors, ok, q, k)
    assert gs.dtype == np.float32 and gr.dtype == np.int64 and gs.shape == gr.shape == (len(q), k)
    np.testing.assert_allclose(gs, ws, atol=1e-5)
    assert np.array_equal(gr < 0, wr < 0) and np.isneginf(gs[gr < 0]).all()
    exact = q @ vectors.T
    for b in range(len(q)):
        rows = gr[b][gr[b] >= 0]
        assert len(set(rows.tolist())) == len(rows) and ok[rows].all()
        np.testing.assert_allclose(gs[b][: len(rows)], exact[b, rows], atol=1e-5)


# ------------------------------------------------------------------------------------------- exact


def test_exact_search_matches_brute_force_and_pads_short_lists() -> None:
    vecs = unit(40)
    store, index = store_with(vecs)
    assert index.kind == "exact"
    q = unit(5, seed=1)
    check_exact(index.search(q, 7), vecs, np.ones(40, bool), q, 7)
    scores, rows = index.search(q[:2], 55)  # more than there are: padded
    assert (rows[:, 40:] == -1).all() and np.isneginf(scores[:, 40:]).all()
    assert sorted(rows[0, :40].tolist()) == list(range(40))
    assert index.search(q, 0)[1].shape == (5, 0)
    assert index.search(np.zeros((0, DIM), np.float32), 3)[1].shape == (0, 3)


def test_allowed_rows_only_and_dead_rows_never() -> None:
    vecs = unit(30)
    store, index = store_with(vecs)
    store.delete(["i0", "i5", "i6"])
    allowed = np.zeros(30, bool)
    allowed[[0, 1, 2, 5, 9, 20]] = True  # 0 and 5 are dead
    q = unit(4, seed=2)
    scores, rows = index.search(q, 10, allowed=allowed)
    assert set(rows[rows >= 0].tolist()) == {1, 2, 9, 20}
    assert (rows[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()
    alive = np.ones(30, bool)
    alive[[0, 5, 6]] = False
    check_exact(index.search(q, 10, allowed=allowed), vecs, alive & allowed, q, 10)
    check_exact(index.search(q, 30), vecs, alive, q, 30)
    nothing = index.search(q, 3, allowed=np.zeros(30, bool))
    assert (nothing[1] == -1).all() and np.isneginf(nothing[0]).all()


def test_a_replaced_vector_is_found_once_with_its_new_score() -> None:
    vecs = unit(20)
    store, index = store_with(vecs)
    store.upsert(["i3"], ["p"], vecs[7:8])  # i3 becomes a copy of i7
    vecs = vecs.copy()
    vecs[3] = vecs[7]
    scores, rows = index.search(vecs[7:8], 20)
    assert sorted(rows[0].tolist()) == list(range(20))
    assert set(rows[0, :2].tolist()) == {3, 7} and scores[0, 1] == pytest.approx(1.0, abs=1e-5)


@settings(max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 60),
    k=st.integers(1, 70),
    dead=st.floats(0, 0.9),
    allowed=st.one_of(st.none(), st.floats(0, 1)),
    seed=st.integers(0, 2**31),
)
def test_exact_search_equals_numpy_top_k(n: int, k: int, dead: float, allowed: float | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vecs = unit(n, seed=seed % 1000)
    store, index = store_with(vecs)
    gone = [f"i{r}" for r in range(n) if rng.random() < dead]
    store.delete(gone)
    alive = np.array([f"i{r}" not in gone for r in range(n)])
    mask = None if allowed is None else rng.random(n) < allowed
    q = unit(3, seed=seed % 1000 + 1)
    check_exact(index.search(q, k, allowed=mask), vecs, alive if mask is None else alive & mask, q, k)


def test_exact_top_k_is_a_row_wise_argsort() -> None:
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(6, 25)).astype(np.float32)
    ok = rng.random(25) < 0.7
    top, cols = exact_top_k(scores.copy(), 8, ok)
    for b in range(6):
        allowed = np.flatnonzero(ok)
        want = allowed[np.argsort(-scores[b, allowed])][:8]
        assert cols[b].tolist() == want.tolist()
        np.testing.assert_array_equal(top[b], scores[b, want])


# --------------------------------------------------------------------------------------------- IVF


def test_the_index_switches_to_ivf_when_a_platform_passes_exact_max() -> None:
    vecs = clustered(400, seed=3)
    store, index = store_with(vecs[:100], exact_max=150)
    assert index.kind == "exact" and index._ivf is None
    store.upsert([f"i{r}" for r in range(100, 150)], ["p"] * 50, vecs[100:150])
    assert index.kind == "exact"  # exactly exact_max live rows: still exact
    store.upsert(["i150"], ["p"], vecs[150:151])
    assert index.kind == "ivf" and index._trained_at == 151
    store.upsert([f"i{r}" for r in range(151, 302)], ["p"] * 151, vecs[151:302])
    assert index._trained_at == 151  # 302 live: not yet twice what it was trained on
    store.upsert([f"i{r}" for r in range(302, 400)], ["p"] * 98, vecs[302:400])
    assert index._trained_at == 400  # retrained once the platform doubled


def test_deletes_that_bring_a_platform_back_to_exact_max_switch_to_exact_search() -> None:
    """The switch is checked on every change, removals included: a shrunk catalog must not stay on
    the approximate index until the next add."""
    vecs = clustered(200, seed=11)
    store, index = store_with(vecs, exact_max=150)
    assert index.kind == "ivf"
    store.delete([f"i{r}" for r in range(40)])  # 160 live: still above
    assert index.kind == "ivf"
    store.delete([f"i{r}" for r in range(40, 50)])  # 150 live: exactly exact_max, exact again
    assert index.kind == "exact" and index._ivf is None
    alive = np.arange(200) >= 50
    q = clustered(6, seed=12)
    check_exact(index.search(q, 10), vecs, alive, q, 10)  # exact answers, no 8-bit codes
    store.upsert(["i0"], ["p"], vecs[:1])  # 151 live: back above, a fresh IVF over what lives now
    assert index.kind == "ivf" and index._trained_at == 151


def test_ivf_scores_are_q_dot_v_thanks_to_the_centring() -> None:
    """The IVF holds ``v − μ`` and adds ``q · μ`` back: scores are those of ``q · v`` (to the 8-bit
    codes' precision), although here ``q · μ`` is large (queries along the common direction)."""
    both = clustered(640, seed=5)
    vecs, q = both[:600], both[600:]  # queries around the same common direction
    store, index = store_with(vecs, exact_max=100, nprobe=10_000)  # every list visited
    assert index.kind == "ivf"
    mean_part = q @ index._mean
    assert mean_part.min() > 0.5  # what forgetting to add it back would cost
    scores, rows = index.search(q, 10)
    assert (rows >= 0).all()
    exact = q @ vecs.T
    np.testing.assert_allclose(scores, np.take_along_axis(exact, rows, axis=1), atol=0.01)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    top = np.argsort(-exact, axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows.tolist(), top.tolist())])
    assert recall >= 0.9  # every list probed: only the 8-bit codes stand between it and exact search


def test_ivf_filters_allowed_rows_and_never_returns_dead_ones() -> None:
    both = clustered(520, seed=7)
    vecs, q = both[:500], both[500:]
    store, index = store_with(vecs, exact_max=100, nprobe=10_000)
    assert index.kind == "ivf"
    dead = list(range(0, 500, 3))
    store.delete([f"i{r}" for r in dead])
    allowed = np.zeros(500, bool)
    allowed[np.arange(0, 500, 2)] = True
    for mask in (None, allowed):
        scores, rows = index.search(q, 15, allowed=mask)
        found = set(rows[rows >= 0].tolist())
        assert not found & set(dead)
        if mask is not None:
            assert all(mask[r] for r in found)
        true = np.take_along_axis(q @ vecs.T, np.maximum(rows, 0), axis=1)
        np.testing.assert_allclose(scores[rows >= 0], true[rows >= 0], atol=0.01)


def test_ivf_pads_short_lists_and_finds_a_replaced_vector_once() -> None:
    vecs = clustered(300, seed=9)
    store, index = store_with(vecs, exact_max=100, nprobe=10_000)
    allowed = np.zeros(300, bool)
    allowed[[4, 40, 200]] = True
    scores, rows = index.search(vecs[:2], 6, allowed=allowed)
    assert (np.sort(rows[:, :3], axis=1) == [4, 40, 200]).all()
    assert (rows[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    store.upsert(["i4"], ["p"], vecs[40:41])  # i4 becomes a copy of i40
    scores, rows = index.search(vecs[40:41], 300)
    found = rows[rows >= 0].tolist()
    assert len(found) == len(set(found)) == 300 and set(found[:2]) == {4, 40}


# ------------------------------------------------------------------------------------------ errors


def test_bad_queries_and_devices() -> None:
    _, index = store_with(unit(5))
    with pytest.raises(IndexError_, match=f"\\(n, {DIM}\\)"):
        index.search(unit(1, dim=DIM + 1), 3)
    with pytest.raises(IndexError_):
        index.search(np.zeros(DIM, np.float32), 3)
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(IndexError_, match="valid"):
        resolve_device("tpu")


def test_cuda_without_a_gpu_is_an_error_and_auto_falls_back_to_the_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(IndexError_, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(IndexError_, match="valid"):
        resolve_device("cudax")

"""GpuExact (``index/gpu.py``), the candidate index's device copy, against the CPU's exact search.

The same code runs on torch's CPU device here, so every machine checks its logic (growing copy,
changed rows, liveness and allowed masks, bias, short lists, query chunks); on a machine with a GPU the
same checks run on it too, and CandidateIndex is checked end to end there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionrec.items import ItemStore
from fusionrec.topk import exact_top_k
from index import gpu as gpu_module
from index.candidates import CandidateIndex, IndexSettings
from index.gpu import GpuExact

DIM = 16
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def cpu_truth(q: np.ndarray, vectors: np.ndarray, k: int, ok: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    scores = q @ vectors.T
    if bias is not None:
        m = min(len(bias), scores.shape[1])
        scores[:, :m] += bias[:m]
    return exact_top_k(scores, k, ok)


@pytest.mark.parametrize("device", DEVICES)
def test_same_top_k_as_the_cpu_with_masks_bias_and_changed_rows(device: str) -> None:
    rng = np.random.default_rng(3)
    vectors = unit(300, 1)
    gpu = GpuExact(DIM, device)
    gpu.add(np.arange(200, dtype=np.int64), vectors[:200])
    gpu.add(np.arange(200, 300, dtype=np.int64), vectors[200:])  # grows past its first capacity
    vectors[[5, 77]] = unit(2, 9)
    gpu.add(np.array([5, 77], np.int64), vectors[[5, 77]])  # a changed vector replaces the old one
    assert gpu.rows == 300
    ok = rng.random(300) < 0.7
    bias = rng.normal(size=250).astype(np.float32)  # shorter than the rows: the rest count 0
    q = unit(7, 2)
    for b in (None, bias):
        got_s, got_r = gpu.search(q, 10, ok, b)
        want_s, want_r = cpu_truth(q, vectors, 10, ok, b)
        np.testing.assert_allclose(got_s, want_s, atol=1e-5)
        assert ok[got_r].all()
        same = np.abs(got_s - want_s) <= 1e-6  # rows agree wherever scores are not near-ties
        assert (got_r[same] == want_r[same]).mean() > 0.99


@pytest.mark.parametrize("device", DEVICES)
def test_short_lists_are_padded_and_queries_are_searched_in_chunks(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = unit(50, 4)
    gpu = GpuExact(DIM, device)
    gpu.add(np.arange(50, dtype=np.int64), vectors)
    ok = np.zeros(50, bool)
    ok[[3, 9, 40]] = True
    monkeypatch.setattr(gpu_module, "SCORE_ELEMENTS", 100)  # two queries per chunk
    q = unit(5, 5)
    scores, rows = gpu.search(q, 6, ok, None)
    assert scores.shape == rows.shape == (5, 6)
    assert set(rows[:, :3].ravel()) == {3, 9, 40}
    assert (rows[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    np.testing.assert_allclose(scores[:, :3], cpu_truth(q, vectors, 3, ok)[0], atol=1e-5)
    empty = GpuExact(DIM, device)
    s, r = empty.search(q, 4, ok, None)
    assert (r == -1).all() and np.isneginf(s).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_candidate_index_on_a_gpu_answers_as_on_the_cpu() -> None:
    vectors = unit(500, 6)
    answers = []
    for device in ("cpu", "cuda"):
        settings = IndexSettings(exact_max=10_000, device=device)
        store = ItemStore(DIM, lambda dim, view, s=settings: CandidateIndex(dim, view, s))
        store.upsert([f"i{r}" for r in range(500)], ["p"] * 500, vectors)
        store.delete([f"i{r}" for r in range(0, 500, 7)])
        index = store.platforms["p"].index
        assert index is not None and index.kind == ("gpu-exact" if device == "cuda" else "exact")
        answers.append(index.search(unit(9, 8), 10))
    np.testing.assert_allclose(answers[0][0], answers[1][0], atol=1e-5)
    assert not np.isin(answers[1][1], np.arange(0, 500, 7)).any()

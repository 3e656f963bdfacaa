"""Compile the core's numba kernels before the first micro-batch needs them.

The kernels (``fusionrec.topk``, ``fusionrec.learner.cooc_kernel``, ``fusionrec.learner.csr_add``,
the int8 quantization of ``fusionrec.pipeline.precision``) compile at their first call: 7.6 s
on a 2-core machine the first time, a fraction of a second once numba's cache beside the sources holds
them, and every time where that folder is not writable.  Paid by the first batch, that would answer its
events seconds late; a worker calls :func:`compile_kernels` while it starts instead.  The calls go
through the same functions, with the same argument types, as ranking and training do.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from fusionrec.learner.csr_add import add_triples
from fusionrec.learner.csr_cut import cut_rows
from fusionrec.learner.features import add_cooc_scores, features_at
from fusionrec.learner.model import N_FEATURES, PlatformModel
from fusionrec.pipeline.precision import quantize_rows
from fusionrec.topk import COMPILED_MIN_RATIO, exact_top_k

__all__ = ["compile_kernels"]


def compile_kernels() -> float:
    """Run every compiled kernel once on a tiny made-up model; returns the seconds it took."""
    start = time.perf_counter()
    n, dim = 8, 2
    exact_top_k(np.zeros((1, COMPILED_MIN_RATIO), np.float32), 1, np.ones(COMPILED_MIN_RATIO, bool))
    model = _tiny_model(n)
    seqs = [[0, 1], [2], [3, 4, 5]]
    scores = np.zeros((len(seqs), n), np.float32)
    add_cooc_scores(model, seqs, scores, np.arange(n, dtype=np.int64))
    vectors = np.eye(n, dim, dtype=np.float32)
    queries = np.zeros((len(seqs), dim), np.float32)
    features_at(model, vectors, queries, queries, queries, seqs, np.array([1, 3, 6], np.int64), np.array([0, 2, 5, 7], np.int64))
    add_triples(model.cooc_recent, np.array([0, 0], np.int64), np.array([1, 1], np.int64), np.ones(2, np.float32))
    quantize_rows(vectors)
    cut_rows(model.cooc_base, 1)
    return time.perf_counter() - start


def _tiny_model(n: int) -> PlatformModel:
    chain = sp.csr_matrix(np.eye(n, k=1, dtype=np.float32) + np.eye(n, k=-1, dtype=np.float32))
    return PlatformModel(
        weights=np.ones(N_FEATURES),
        n=n,
        pop=np.zeros((2, n), np.float32),
        inv_count=np.ones(n, np.float32),
        src_norm=np.ones(n, np.float32),
        new=np.zeros(n, bool),
        pop_score=np.zeros(n, np.float32),
        popular=np.zeros(0, np.int64),
        cooc_base=chain,
        cooc_recent=chain.copy(),
    )

"""``fusionrec.learner.csr_add``: adding triples to a CSR matrix is scipy's sparse sum, canonical."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.learner.csr_add import add_triples


def _canonical(m: sp.csr_matrix) -> bool:
    rows = np.split(m.indices, m.indptr[1:-1])
    return all((np.diff(r) > 0).all() for r in rows) and (m.data != 0).all()


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 2**32 - 1),
    st.integers(0, 40),
    st.integers(0, 60),
)
def test_adding_triples_is_scipys_sum_with_repeats_summed(n_rows: int, n_cols: int, seed: int, n_base: int, n_add: int) -> None:
    rng = np.random.default_rng(seed)
    base = sp.csr_matrix(
        (rng.integers(1, 5, n_base).astype(np.float32) / 4, (rng.integers(0, n_rows, n_base), rng.integers(0, n_cols, n_base))),
        shape=(n_rows, n_cols), dtype=np.float32,
    )  # fmt: skip
    src, dst = rng.integers(0, n_rows, n_add), rng.integers(0, n_cols, n_add)  # small ranges: many repeats
    val = (rng.integers(-4, 5, n_add) / 4).astype(np.float32)  # quarters: sums exact in any order, zeros too
    before = base.copy()
    got = add_triples(base, src, dst, val)
    want = base + sp.csr_matrix((val, (src, dst)), shape=base.shape, dtype=np.float32)
    want.eliminate_zeros()
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got.toarray(), want.toarray())
    assert got.nnz == want.nnz and _canonical(got)  # sorted columns, no repeats, no explicit zeros
    assert (base != before).nnz == 0  # the old matrix is left as it was: readers keep their view


def test_a_triple_outside_the_matrix_is_refused() -> None:
    m = sp.csr_matrix((3, 3), dtype=np.float32)
    with pytest.raises(IndexError):
        add_triples(m, np.array([3]), np.array([0]), np.array([1.0], np.float32))
    with pytest.raises(IndexError):
        add_triples(m, np.array([0]), np.array([-1]), np.array([1.0], np.float32))

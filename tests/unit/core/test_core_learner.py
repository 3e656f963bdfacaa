"""The online learner (``fusionrec.learner``) and the candidate scoring that reads its published model:
candidate scores are the features times the published weights, new items are told apart, found and
handed to the new-item slot, the new-item weight is learned, an earlier feature set's checkpoint still
loads; and the pieces under it — the co-occurrence statistics and the sparse top-k."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import DictStates, build_core
from fusionrec.config import Config, ModelConfig, PolicyConfig, WorkerConfig
from fusionrec.contracts import BehaviorEvent, ItemUpsert
from fusionrec.errors import CheckpointError
from fusionrec.items import ItemStore
from fusionrec.learner import OnlineLearner, persistence
from fusionrec.learner.features import add_cooc_scores, cooc_scores, features_at, top_per_row
from fusionrec.learner.model import COS_FUSED, COS_LAST, FEATURES, INITIAL_WEIGHTS, NEW, NEW_FUSED, NEW_LAST, POP_LONG
from fusionrec.learner.stats import BACKWARD, WINDOW, Cooc, InteractionStats, strongest
from fusionrec.pipeline import precision as precision_module
from fusionrec.pipeline.candidates import CandidateSizes, NewBlock, find_candidates
from fusionrec.pipeline.precision import OldCopy, int8_error_bound, native_bfloat16, native_int8, resolve_precision
from fusionrec.pipeline.choose import choose
from fusionrec.pipeline.requests import RequestBatch
from fusionrec.policy.ranker import PolicyRanker
from index.candidates import CandidateIndex, IndexSettings

DIM = 8
N = 30
T0 = 1.6e9
ALL = CandidateSizes(text=N + 5, cooc=N + 5, popular=N + 5, new=N + 5)
"""Every candidate source large enough to hold the whole platform: the candidates are exhaustive."""


def unit_rows(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_learner() -> OnlineLearner:
    store = ItemStore(DIM, lambda dim, view: CandidateIndex(dim, view, IndexSettings(exact_max=10_000)))
    store.upsert([f"i{n}" for n in range(N)], ["shop"] * N, unit_rows(N, 0))
    learner = OnlineLearner(store, publish_every=10_000)
    learner.publish()
    return learner


def row(learner: OnlineLearner, item: str) -> int:
    r = learner.store.row_of(item)
    assert r is not None
    return r


def play(learner: OnlineLearner, sequences: list[list[str]]) -> None:
    """Each sequence is one person's positive events, recorded in order; then published."""
    ts = T0
    for seq in sequences:
        for n, item in enumerate(seq):
            ts += 60.0
            learner.observe("shop", row(learner, item), ts, True, [row(learner, i) for i in seq[:n]], None)
    learner.publish()


def requests(learner: OnlineLearner, seqs: list[tuple[str, ...]], consumed: list[set[str]] | None = None) -> RequestBatch:
    """Requests of people whose recent positive items are ``seqs`` (profile: the mean of their vectors)."""
    store = learner.store
    b = len(seqs)
    fused = np.stack([store.vectors_of(list(s)).mean(axis=0) for s in seqs]).astype(np.float32)
    fused /= np.linalg.norm(fused, axis=1, keepdims=True)
    last = store.vectors_of([s[-1] for s in seqs])
    consumed = consumed or [set(s) for s in seqs]
    return RequestBatch(
        platform=np.zeros(b, np.int64), person=[f"p{n}" for n in range(b)], event_id=[f"e{n}" for n in range(b)],
        touched=[s[-1] for s in seqs], fused=fused, known=np.ones(b, bool), own=fused.copy(), last=last,
        weights=np.ones((b, 1)), units=fused[:, None, :].copy(), present=np.ones((b, 1), bool),
        seq=[[row(learner, i) for i in s] for s in seqs], recent=[[[row(learner, i) for i in s[::-1]]] for s in seqs],
        consumed=[np.array(sorted(row(learner, i) for i in c), np.int64) for c in consumed],
    )  # fmt: skip


def expected_scores(learner: OnlineLearner, reqs: RequestBatch, b: int, rows: np.ndarray) -> np.ndarray:
    """``w · f(i)`` of ``rows`` for request ``b``, from ``features_at`` (the training features), with the
    terms of rows the published model does not know yet (added since) as those of a new item."""
    model = learner.model.platforms["shop"]
    vectors = learner.store.platforms["shop"].vectors
    known = rows[rows < model.n]
    out: dict[int, float] = {}
    if len(known):  # the shared "negatives" of features_at: rows scored for every example
        f = features_at(model, vectors, reqs.fused[b : b + 1], reqs.own[b : b + 1], reqs.last[b : b + 1], [reqs.seq[b]], known[:1], known)
        out = dict(zip(known.tolist(), (f[0, 1:, :] @ model.weights).tolist()))
    for r in rows[rows >= model.n].tolist():
        g = np.zeros(len(FEATURES))
        g[COS_FUSED] = g[NEW_FUSED] = float(vectors[r] @ reqs.fused[b])
        g[1] = float(vectors[r] @ reqs.own[b])
        g[COS_LAST] = g[NEW_LAST] = float(vectors[r] @ reqs.last[b])
        g[NEW] = 1.0
        out[r] = float(g @ model.weights)
    return np.array([out[r] for r in rows.tolist()])


@pytest.mark.parametrize("exact_max", [10_000, 0], ids=["new-block", "new-by-index"])
def test_candidate_scores_are_the_feature_rows_times_the_published_weights(exact_max: int) -> None:
    """Both ways of finding the new items (the cached block of new items, or the index searched among
    them): every live item is a candidate exactly once, scored ``w · f(i)``."""
    learner = make_learner()
    play(learner, [["i0", "i1", "i2", "i3"], ["i1", "i2", "i4"], ["i0", "i2", "i5", "i1"]])
    learner.adagrad.weights["shop"] = np.random.default_rng(7).normal(size=len(FEATURES))
    learner.adagrad.grad_sq["shop"] = np.ones(len(FEATURES))
    learner.publish()
    seqs = [("i0", "i2"), ("i1",), ("i3", "i4", "i5")]
    reqs = requests(learner, seqs, consumed=[set()] * 3)
    block = NewBlock()
    items = learner.store.platforms["shop"]

    def check(n_items: int) -> None:
        model = learner.model.platforms["shop"]
        assert model.uses_new and model.uses_cooc
        cands = find_candidates(model, items, reqs, ALL, new_slot=True, new_block=block, catalog_version=learner.store.version, exact_max=exact_max)
        for b in range(len(seqs)):
            ok = np.isfinite(cands.scores[b])
            rows = cands.rows[b][ok]
            assert sorted(rows.tolist()) == [r for r in range(n_items) if items.alive[r]]  # each once
            np.testing.assert_allclose(cands.scores[b][ok], expected_scores(learner, reqs, b, rows), rtol=1e-4, atol=1e-4)

    check(N)
    assert learner.model.platforms["shop"].new.tolist() == [n > 5 for n in range(N)]
    # the cached block of new items goes stale: items get their first interaction, then one is added
    play(learner, [["i6", "i7"], ["i8", "i20"]])
    check(N)
    learner.store.upsert(["i30"], ["shop"], unit_rows(1, 9))  # not published yet: new all the same
    check(N + 1)
    assert learner.maybe_publish() is False  # the statistics follow the store (the weights stay)
    check(N + 1)
    assert learner.model.platforms["shop"].new.tolist() == [n > 8 and n != 20 for n in range(N + 1)]
    # every item reached: no new item is left, and the old ones still come from the block's copy
    play(learner, [[items.ids[r] for r in range(N + 1) if learner.model.platforms["shop"].new[r]]])
    assert not learner.model.platforms["shop"].new.any()
    check(N + 1)


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_reduced_precision_candidates_are_the_float32_ones_with_scores_rounded_in_the_third_decimal(precision: str) -> None:
    """``model.exact_precision = "bfloat16" | "int8"``: the old items' product on a reduced copy; every
    live item is still a candidate once, its score the float32 one up to the product's rounding."""
    learner = make_learner()
    play(learner, [["i0", "i1", "i2", "i3"], ["i1", "i2", "i4"], ["i0", "i2", "i5", "i1"]])
    learner.adagrad.weights["shop"] = np.random.default_rng(7).normal(size=len(FEATURES))
    learner.publish()
    reqs = requests(learner, [("i0", "i2"), ("i1",), ("i3", "i4", "i5")], consumed=[set()] * 3)
    model, items = learner.model.platforms["shop"], learner.store.platforms["shop"]
    got = {}
    for name in ("float32", precision):
        cands = find_candidates(model, items, reqs, ALL, new_slot=True, new_block=NewBlock(name), catalog_version=learner.store.version, exact_max=10_000)
        got[name] = [dict(zip(r[np.isfinite(s)].tolist(), s[np.isfinite(s)].tolist())) for r, s in zip(cands.rows, cands.scores)]
    for exact, rounded in zip(got["float32"], got[precision]):
        assert sorted(exact) == sorted(rounded) == [r for r in range(N) if items.alive[r]]
        diffs = [abs(exact[r] - rounded[r]) for r in exact]
        assert max(diffs) < 0.02 * (1 + max(abs(v) for v in exact.values()))
        assert max(diffs) > 0  # the rounding is there: the reduced product did run


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 7),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_the_int8_product_is_within_its_rounding_bound_of_the_exact_one(n_q: int, n_v: int, d: int, seed: int, scale: float) -> None:
    """Each score is off by at most what rounding every coordinate by half its row's scale can move it
    (the int32 sums are exact); rows of zeros score zero."""
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal((n_q, d)) * scale * rng.uniform(0, 2, (n_q, 1))).astype(np.float32)
    v = (rng.standard_normal((n_v, d)) * rng.uniform(0, 2, (n_v, 1))).astype(np.float32)
    if n_q > 1:
        q[0] = 0.0  # a request with no profile yet
    bias = rng.standard_normal(n_v).astype(np.float32)
    exact = q.astype(np.float64) @ v.astype(np.float64).T + bias
    got = OldCopy.of(v, "int8").product(q, bias)
    assert got.shape == (n_q, n_v) and got.dtype == np.float32
    tolerance = 1e-5 * (1 + np.abs(exact))  # the float32 rescaling's own rounding
    assert (np.abs(got - exact) <= int8_error_bound(q, v) + tolerance).all()
    out = np.full((n_q, n_v + 2), np.nan, np.float32)
    OldCopy.of(v, "int8").product(q, bias, out=out[:, :n_v])  # into a caller's strided block, as the search does
    np.testing.assert_array_equal(out[:, :n_v], got)
    assert np.isnan(out[:, n_v:]).all()


@pytest.mark.parametrize(
    ("flags", "bfloat16", "int8"),
    [
        ("fpu avx512f avx512_bf16 avx512_vnni", True, True),
        ("fpu avx512f amx_bf16 amx_tile amx_int8", True, True),
        ("fpu avx2 avx_vnni", False, True),
        ("fpu avx2 avx512f avx512bw", False, False),
        (None, False, False),
    ],
)
def test_reduced_precisions_are_native_only_where_the_cpu_flags_name_their_dot_product_instructions(tmp_path, flags: str | None, bfloat16: bool, int8: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    # no file (not Linux): float32, the safe choice
    assert native_bfloat16(str(cpuinfo)) is bfloat16 and native_int8(str(cpuinfo)) is int8


@pytest.mark.parametrize(("bfloat16", "int8", "resolved"), [(True, True, "int8"), (False, True, "int8"), (True, False, "bfloat16"), (False, False, "float32")])
def test_auto_precision_is_the_fastest_native_one(monkeypatch: pytest.MonkeyPatch, bfloat16: bool, int8: bool, resolved: str) -> None:
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: bfloat16)
    monkeypatch.setattr(precision_module, "native_int8", lambda: int8)
    assert resolve_precision("auto") == resolved
    assert [resolve_precision(p) for p in ("float32", "bfloat16", "int8")] == ["float32", "bfloat16", "int8"]
    cfg = Config(platforms=("shop",), model=ModelConfig(exact_precision="auto"))
    rec = build_core(("shop",), cfg=cfg, dim=DIM, items=[ItemUpsert(f"i{n}", "shop", f"item {n}") for n in range(N)])
    assert rec.exact_precision == resolved
    rec.process([BehaviorEvent("e1", T0, "shop", "u1", "i1", "view")], DictStates())
    assert rec._new_blocks["shop"].precision == rec.exact_precision  # the search runs what the report says


def test_an_item_stops_being_new_at_its_first_positive_interaction_only() -> None:
    learner = make_learner()
    assert learner.model.platforms["shop"].new.all()
    learner.observe("shop", row(learner, "i0"), T0, True, [], None)
    learner.observe("shop", row(learner, "i1"), T0, False, [], None)
    learner.maybe_publish()
    assert learner.model.platforms["shop"].new[:3].tolist() == [False, True, True]
    learner.store.delete(["i1"])
    learner.maybe_publish()
    new = learner.model.platforms["shop"].new
    assert not new[1]  # deleted: not recommendable at all
    assert new.sum() == N - 2


def test_the_best_new_items_reach_the_new_item_slot_below_an_unchanged_head() -> None:
    learner = make_learner()
    play(learner, [[f"i{n}" for n in range(10)]])
    w = np.zeros(len(FEATURES))
    w[COS_FUSED], w[POP_LONG] = 1.0, 5.0  # seen items first
    learner.adagrad.weights["shop"] = w
    learner.adagrad.grad_sq["shop"] = np.ones(len(FEATURES))
    learner.publish()
    model = learner.model.platforms["shop"]
    items = learner.store.platforms["shop"]
    reqs = requests(learner, [("i0", "i1")], consumed=[{"i0", "i1", "i12"}])

    def chosen(new_item_position: int) -> list[str]:
        policy = PolicyRanker(PolicyConfig(name="none", new_item_position=new_item_position), ("shop",))
        cands = find_candidates(model, items, reqs, ALL, new_slot=new_item_position > 0, new_block=NewBlock(), catalog_version=learner.store.version, exact_max=10_000)
        got = choose(cands, reqs, model, items.vectors, policy, 5, "shop")
        return [items.ids[r] for r in got.rows[0].tolist() if r >= 0]

    plain = chosen(0)
    assert len(plain) == 5 and all(int(i[1:]) < 10 for i in plain)  # the popularity weight put seen items on top
    assert not {"i0", "i1"} & set(plain)
    with_slot = chosen(5)
    assert with_slot[:4] == plain[:4]
    new_rows = [r for r in range(N) if model.new[r] and items.ids[r] != "i12"]
    best = max(new_rows, key=lambda r: float(items.vectors[r] @ reqs.fused[0]))
    assert with_slot[4] == items.ids[best] and int(with_slot[4][1:]) >= 10


def test_the_new_item_weight_is_learned_from_a_stream_that_keeps_picking_new_items() -> None:
    cfg = Config(platforms=("shop",), model=ModelConfig(train_every=1, learn_publish_every=10_000))
    rec = build_core(("shop",), cfg=cfg, dim=DIM, items=[ItemUpsert(f"i{n}", "shop", f"item {n}") for n in range(N)])
    rec.learner.negatives = 16
    order = np.random.default_rng(3).permutation(N).tolist()
    states = DictStates()
    ts = T0
    # ten people, each picking three items nobody has picked before: every positive is a new item
    for p in range(10):
        events = []
        for j in range(3):
            ts += 60.0
            events.append(BehaviorEvent(f"e{p}-{j}", ts, "shop", f"u{p}", f"i{order[3 * p + j]}", "purchase"))
        rec.process(events, states, rank=False)
    assert rec.learner.adagrad.weights["shop"][NEW] > 0
    rec.learner.publish()
    assert rec.learner.model.platforms["shop"].weights[NEW] > 0


def test_co_occurrence_scattered_into_a_block_equals_the_summed_sparse_scores() -> None:
    """``add_cooc_scores`` (the exact search's way) adds what ``cooc_scores`` gives, item by item, and
    leaves the items without a column alone."""
    learner = make_learner()
    play(learner, [["i0", "i1", "i2", "i3"], ["i1", "i2", "i4"], ["i0", "i2", "i5", "i1"], ["i3", "i4", "i0"]])
    learner.adagrad.weights["shop"] = np.random.default_rng(3).normal(size=len(FEATURES))
    learner.publish()
    model = learner.model.platforms["shop"]
    reqs = requests(learner, [("i0", "i2"), ("i1",), ("i3", "i4", "i5"), ("i5",)], consumed=[set()] * 4)
    n = learner.store.platforms["shop"].n
    dense = cooc_scores(model, reqs.seq).toarray()[:, :n]
    assert np.count_nonzero(dense) > 4
    column = np.arange(n, dtype=np.int64)
    column[1] = -1  # an item out of the block (e.g. a new one, scored apart)
    base = np.random.default_rng(0).normal(size=(4, n)).astype(np.float32)
    got = base.copy()
    add_cooc_scores(model, reqs.seq, got, column)
    want = base + dense
    want[:, 1] = base[:, 1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_the_earlier_feature_set_loads_with_the_missing_features_at_their_start() -> None:
    def core():  # type: ignore[no-untyped-def]
        cfg = Config(platforms=("shop",), model=ModelConfig(train_every=1))
        return build_core(("shop",), cfg=cfg, dim=DIM, items=[ItemUpsert(f"i{n}", "shop", f"item {n}") for n in range(N)])

    rec = core()
    events = [BehaviorEvent(f"e{k}", T0 + k, "shop", f"u{k % 3}", f"i{k % 7}", "click") for k in range(60)]
    rec.process(events, DictStates(), rank=False)
    tensors, meta = persistence.state_dict(rec.learner)
    assert not np.allclose(tensors["weights.shop"], INITIAL_WEIGHTS)  # something was learned
    old = FEATURES[:8]  # the feature set before the new-item features
    tensors["weights.shop"] = tensors["weights.shop"][:8]
    tensors["grad_sq.shop"] = tensors["grad_sq.shop"][:8]
    meta["features"] = json.dumps(old)
    again = core()
    persistence.load_state_dict(again.learner, tensors, meta)
    np.testing.assert_allclose(again.learner.weights["shop"][:8], rec.learner.weights["shop"][:8])
    np.testing.assert_allclose(again.learner.weights["shop"][8:], INITIAL_WEIGHTS[8:])
    meta["features"] = json.dumps([*old, "something_else"])
    with pytest.raises(CheckpointError, match="something_else"):
        persistence.load_state_dict(core().learner, tensors, meta)


# ------------------------------------------------------------------------------- co-occurrence


def test_a_positive_event_adds_its_window_to_the_co_occurrence_by_hand() -> None:
    stats = InteractionStats()
    stats.record("shop", 3, T0, [2, 1, 0])  # row 3 after 2, 1, 0 (newest first)
    stats.record("shop", 1, T0 + 1, [3, 1])  # an item never co-occurs with itself
    stats.publish({"shop": 5})
    c = stats.platforms["shop"].cooc
    dense = (c.base + c.recent).toarray()
    expected = np.zeros((5, 5), np.float32)
    for k, prev in enumerate([2, 1, 0]):
        expected[prev, 3] += 1 / (k + 1)
        expected[3, prev] += BACKWARD / (k + 1)
    expected[3, 1] += 1.0
    expected[1, 3] += BACKWARD
    np.testing.assert_allclose(dense, expected, rtol=1e-6)
    np.testing.assert_allclose(stats.platforms["shop"].src_total[:5], expected.sum(axis=1), rtol=1e-6)
    assert stats.platforms["shop"].counts[:5].tolist() == [0, 1, 0, 1, 0]
    assert WINDOW == 5
    stats.record("shop", 4, T0 + 2, [0, 1, 2, 3, 1, 2, 3])  # only the WINDOW newest count
    stats.publish({"shop": 5})
    c = stats.platforms["shop"].cooc
    assert (c.base + c.recent).toarray()[:, 4].nonzero()[0].tolist() == [0, 1, 2, 3]


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), batches=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 20)), min_size=1, max_size=8))
def test_cooc_keeps_the_sum_of_everything_added_through_growth_and_merges(seed: int, batches: list[tuple[int, int]]) -> None:
    rng = np.random.default_rng(seed)
    cooc = Cooc()
    dense = np.zeros((0, 0))
    n = 0
    for size, grow in batches:
        n += grow
        if n == 0:
            continue
        src, dst = rng.integers(0, n, size), rng.integers(0, n, size)
        val = rng.random(size).astype(np.float32)
        before = (cooc.base, cooc.recent, cooc.base.copy(), cooc.recent.copy())
        cooc.add(n, src, dst, val)
        grown = np.zeros((n, n))
        grown[: dense.shape[0], : dense.shape[1]] = dense
        dense = grown
        np.add.at(dense, (src, dst), val)
        assert cooc.n == n and cooc.base.shape == cooc.recent.shape == (n, n)
        np.testing.assert_allclose((cooc.base + cooc.recent).toarray(), dense, rtol=1e-5, atol=1e-5)
        # a reader holding the matrices of before the call still sees what it saw
        assert (before[0] != before[2]).nnz == 0 and (before[1] != before[3]).nnz == 0
        assert cooc.recent.nnz <= 0.25 * max(cooc.base.nnz, 4096)  # folded into base once it grew past a quarter
        r, c, v = cooc.triples()
        tri = np.zeros((n, n))
        np.add.at(tri, (r, c), v)
        np.testing.assert_allclose(tri, dense, rtol=1e-5, atol=1e-5)
        h = sp.random(3, n, density=0.3, random_state=seed % 1000, dtype=np.float32, format="csr")
        np.testing.assert_allclose(cooc.rows_times(h).toarray(), h.toarray() @ dense, rtol=1e-4, atol=1e-4)


def test_cooc_folds_recent_into_base_when_it_passes_a_quarter() -> None:
    cooc = Cooc()
    n = 200
    rng = np.random.default_rng(0)
    cooc.add(n, rng.integers(0, n, 1000), rng.integers(0, n, 1000), np.ones(1000, np.float32))
    assert cooc.base.nnz == 0 and cooc.recent.nnz > 0  # under 1024 (a quarter of 4096): all recent
    total = (cooc.base + cooc.recent).sum()
    cooc.add(n, rng.integers(0, n, 500), rng.integers(0, n, 500), np.ones(500, np.float32))
    assert cooc.recent.nnz == 0 and cooc.base.nnz > 1024  # folded
    assert (cooc.base + cooc.recent).sum() == pytest.approx(total + 500)


def _strongest_by_sorting(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The definition: every entry sorted by (row, -value), stable, then the first ``k`` of each row."""
    lengths = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    order = np.lexsort((-m.data, rows))
    rank = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    keep = order[rank < k]
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float32)
    out.sort_indices()
    return out


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(rows=st.integers(1, 8), cols=st.integers(1, 40), density=st.floats(0, 1), k=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_strongest_breaks_ties_towards_the_lower_column_as_a_stable_sort_does(rows: int, cols: int, density: float, k: int, seed: int) -> None:
    """The compiled cut keeps exactly the entries a stable sort by value keeps (small integer values: many ties)."""
    rng = np.random.default_rng(seed)
    m = sp.csr_matrix(np.where(rng.random((rows, cols)) < density, rng.integers(1, 4, (rows, cols)), 0).astype(np.float32))
    got, want = strongest(m, k), _strongest_by_sorting(m, k)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)
    assert got.dtype == np.float32


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(rows=st.integers(1, 8), cols=st.integers(1, 40), density=st.floats(0, 1), k=st.integers(0, 12), seed=st.integers(0, 2**31))
def test_strongest_keeps_each_rows_k_largest_values(rows: int, cols: int, density: float, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((rows, cols)) < density, rng.integers(1, 6, (rows, cols)), 0).astype(np.float32)
    out = strongest(sp.csr_matrix(dense), k).toarray()
    for r in range(rows):
        stored = dense[r][dense[r] > 0]
        kept = out[r][out[r] > 0]
        assert len(kept) == (len(stored) if k <= 0 else min(k, len(stored)))
        np.testing.assert_array_equal(np.sort(kept)[::-1], np.sort(stored)[::-1][: len(kept)])  # the largest, ties either way
        assert np.all((out[r] == 0) | (out[r] == dense[r]))  # kept values stay in their columns


def test_the_ranker_reads_the_truncated_rows_and_the_checkpoint_every_count() -> None:
    cooc = Cooc(neighbours=2)
    n = 60
    rng = np.random.default_rng(1)
    src, dst = np.divmod(np.arange(n * n), n)
    val = rng.integers(1, 1000, n * n).astype(np.float32)
    cooc.add(n, src, dst, val)  # 3,600 entries: past a quarter of 4,096, so folded into base
    assert cooc.base.nnz == n * n and cooc.recent.nnz == 0
    served = cooc.served.toarray()
    assert (served > 0).sum(axis=1).tolist() == [2] * n
    for r in range(n):
        assert sorted(served[r][served[r] > 0].tolist()) == sorted(np.sort(val[r * n : (r + 1) * n])[-2:].tolist())
    assert float(cooc.triples()[2].sum()) == pytest.approx(float(val.sum()))  # checkpoints keep every count


# ------------------------------------------------------------------------------------ top_per_row


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(rows=st.integers(1, 8), cols=st.integers(1, 40), density=st.floats(0, 1), k=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_top_per_row_is_the_dense_argsort_of_the_stored_entries(rows: int, cols: int, density: float, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((rows, cols)) < density, rng.normal(size=(rows, cols)), 0.0).astype(np.float32)
    m = sp.csr_matrix(dense)
    values, got = top_per_row(m, k)
    assert values.shape == got.shape == (rows, k) and got.dtype == np.int64
    for r in range(rows):
        stored = np.flatnonzero(dense[r])
        want = stored[np.argsort(-dense[r, stored], kind="stable")][: min(k, len(stored))]
        mine = got[r] >= 0
        assert mine.sum() == len(want)
        assert np.all(values[r][~mine] == -np.inf)
        # the same values (ties may pick other columns of an equal value), each its column's value
        np.testing.assert_array_equal(np.sort(values[r][mine]), np.sort(dense[r, want]))
        np.testing.assert_array_equal(values[r][mine], dense[r, got[r][mine]])
        assert len(set(got[r][mine].tolist())) == mine.sum()


def test_top_per_row_by_hand() -> None:
    m = sp.csr_matrix(np.array([[0, 3, 0, 1, 2], [0, 0, 0, 0, 0], [5, 0, 0, 0, 0]], np.float32))
    values, cols = top_per_row(m, 2)
    assert sorted(zip(cols[0].tolist(), values[0].tolist())) == [(1, 3.0), (4, 2.0)]
    assert cols[1].tolist() == [-1, -1] and values[1].tolist() == [-np.inf, -np.inf]
    assert sorted(cols[2].tolist()) == [-1, 0] and sorted(values[2].tolist()) == [-np.inf, 5.0]


# --------------------------------------------------------------------------------- through the core


def test_the_core_publishes_statistics_every_batch_and_weights_every_publish_every_events() -> None:
    cfg = Config(platforms=("shop",), worker=WorkerConfig(top_k=5), model=ModelConfig(learn_publish_every=20, train_every=1))
    rec = build_core(("shop",), cfg=cfg, dim=DIM, items=[ItemUpsert(f"i{n}", "shop", f"item {n}") for n in range(N)])
    states = DictStates()
    models = []
    for b in range(6):
        events = [BehaviorEvent(f"e{b}-{k}", T0 + 10 * b + k, "shop", f"u{k % 2}", f"i{(b + k) % 9}", "click") for k in range(8)]
        rec.process(events, states)
        models.append(rec.learner.model)
    # statistics: a new model at every batch (with the previous batch's counts) ...
    assert [m.version for m in models] == sorted({m.version for m in models})
    assert [float(m.platforms["shop"].pop[1].sum() > 0) for m in models] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    # ...the fitted weights only once 20 events were learned since the last publication (batch 3: 24)
    same = [np.array_equal(a.platforms["shop"].weights, b.platforms["shop"].weights) for a, b in zip(models, models[1:])]
    assert same == [True, True, False, True, True]


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from([-np.inf, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, np.inf]), max_size=60), st.integers(0, 25))
def test_best_rows_are_the_stable_order_of_the_positive_finite_scores(values: list[float], k: int) -> None:
    from fusionrec.learner import _best_rows

    scores = np.array(values, np.float32)
    finite = np.flatnonzero(np.isfinite(scores) & (scores > 0))
    want = finite[np.argsort(-scores[finite], kind="stable")[:k]] if k > 0 else finite[:0]
    np.testing.assert_array_equal(_best_rows(scores, k), want)  # ties in row order, as a stable sort gives

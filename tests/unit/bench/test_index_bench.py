"""The index bench (``fusionrec bench --only index``) on CandidateIndex: its figures' shape and the
figures that are not timings (recall, agreement with raw faiss, the catalog left as it was).

No timing is asserted: benchmarks are commands, not tests.
"""

from __future__ import annotations

import numpy as np

from stream.bench.index import ADD_BATCH, K, bench_index, build, cluster_centres, mutations, recall_at_k, synthetic


def test_recall_at_k_counts_shared_rows_and_ignores_padding() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    got = np.array([[4, 3, 9, 8], [6, -1, -1, -1]])
    assert recall_at_k(got, truth) == (0.5 + 0.5) / 2
    assert recall_at_k(truth, truth) == 1.0


def test_synthetic_vectors_are_unit_and_share_a_direction_like_text_embeddings() -> None:
    rng = np.random.default_rng(0)
    v = synthetic(4000, rng, cluster_centres(40, rng))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert 0.45 < np.linalg.norm(v.mean(axis=0)) < 0.75  # all-MiniLM-L6-v2's item vectors: ~0.6


def test_mutations_leave_the_catalog_and_its_answers_as_they_were() -> None:
    rng = np.random.default_rng(1)
    vectors = synthetic(600 + ADD_BATCH, rng, cluster_centres(16, rng))
    catalog, index, _ = build(vectors, 600, exact_max=0, nprobe=16, device="cpu")
    assert index.kind == "ivf"
    before = index.search(vectors[:8], K)
    figures = mutations(catalog, min_s=0.0, max_calls=3)
    assert {"add_ms", "delete_ms"} <= figures.keys() and figures["add_batch"] == ADD_BATCH
    assert catalog.alive[:600].all() and not catalog.alive[600:].any()
    after = index.search(vectors[:8], K)
    np.testing.assert_array_equal(before[1], after[1])


def test_bench_index_reports_both_kinds_per_size() -> None:
    report = bench_index((500, 900), quick=True, min_s=0.0)
    assert report["headline"] == f"900 items, batches of 256, k={K}" and report["device"] == "cpu"
    for key in ("queries_per_s", "faiss_queries_per_s", "overhead_vs_faiss", "overhead_vs_faiss_max_batch", "overhead_vs_faiss_max_single"):
        assert np.isfinite(report[key])
    assert [s["items"] for s in report["sizes"]] == [500, 900]
    for size in report["sizes"]:
        assert size["kind"] == "exact" and size["ivf"]["kind"] == "ivf"
        assert size["same_results_as_faiss"] == 1.0  # the exact kind finds what raw faiss finds
        assert size["batch"]["queries_per_s"] > 0 and size["single"]["queries_per_s"] > 0
        assert size["add_ms"] >= 0 and size["delete_ms"] >= 0 and size["ivf"]["add_ms"] >= 0
        ivf = size["ivf"]
        assert [s["nprobe"] for s in ivf["settings"]] == [ivf["nprobe_default"]]  # quick: the default only
        assert 0.5 < ivf["recall_at_10"] <= 1.0 and ivf["nlist"] >= 16
    assert report["ivf_recall_at_10"] == report["sizes"][-1]["ivf"]["recall_at_10"]

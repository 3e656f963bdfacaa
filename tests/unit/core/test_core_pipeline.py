"""Pure stages of the hot path: consumed candidates are masked with one sorted join, the best M are
kept best first, and the new-item slot is filled as the policy says (``fusionrec.pipeline.choose``: the
cases and invariants of the new-item slot, on the core's own implementation); a person's consumed
rows stay sorted as a batch adds to them (``pipeline.update``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.pipeline.candidates import Candidates
from fusionrec.pipeline.choose import Chosen, _place_new_items, best_m, mask_consumed
from fusionrec.pipeline.update import _Consumed
from fusionrec.policy.exploration import NoExploration
from fusionrec.policy.ranker import Arm

I64 = np.int64


def cands(rows: list[list[int]], scores: list[list[float]] | None = None, new: list[list[bool]] | None = None) -> Candidates:
    r = np.array(rows, I64)
    s = np.array(scores, np.float32) if scores is not None else np.where(r >= 0, 1.0, -np.inf).astype(np.float32)
    n = np.array(new, bool) if new is not None else np.zeros(r.shape, bool)
    return Candidates(r, s, n)


# ------------------------------------------------------------------------------------ mask_consumed


def test_mask_consumed_by_hand() -> None:
    c = cands([[3, 1, -1, 7, 0], [0, 2, 5, 5, -1], [4, 4, 9, 1, 2]], [[0.9, 0.8, -np.inf, 0.6, 0.5], [0.5, 0.4, 0.3, 0.2, -np.inf], [1, 2, 3, 4, 5]])
    mask_consumed(c, [np.array([1, 7], I64), np.array([5], I64), np.array([], I64)])
    assert c.scores.tolist() == [
        [np.float32(0.9), -np.inf, -np.inf, -np.inf, np.float32(0.5)],
        [np.float32(0.5), np.float32(0.4), -np.inf, -np.inf, -np.inf],
        [1, 2, 3, 4, 5],  # nothing consumed: untouched
    ]


def test_mask_consumed_never_matches_padding_and_reaches_past_the_largest_candidate() -> None:
    c = cands([[-1, 0, 2], [-1, -1, 6]], [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask_consumed(c, [np.array([0, 100], I64), np.array([0, 6], I64)])  # row 0 is not the padding -1
    assert c.scores.tolist() == [[np.float32(0.1), -np.inf, np.float32(0.3)], [np.float32(0.4), np.float32(0.5), -np.inf]]
    untouched = cands([[1, 2]], [[0.7, 0.8]])
    mask_consumed(untouched, [np.array([], I64)])
    assert untouched.scores.tolist() == [[np.float32(0.7), np.float32(0.8)]]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    data=st.lists(
        st.tuples(st.lists(st.integers(-1, 30), min_size=6, max_size=6), st.sets(st.integers(0, 40), max_size=10)),
        min_size=1,
        max_size=6,
    )
)
def test_consumed_rows_never_survive_and_nothing_else_changes(data: list[tuple[list[int], set[int]]]) -> None:
    rows = [r for r, _ in data]
    consumed = [np.array(sorted(c), I64) for _, c in data]
    rng = np.random.default_rng(len(data))
    scores = np.where(np.array(rows) >= 0, rng.random((len(rows), 6)), -np.inf).astype(np.float32)
    c = cands(rows, scores.tolist())
    mask_consumed(c, consumed)
    for b, (r, gone) in enumerate(data):
        for j, row in enumerate(r):
            if row >= 0 and row in gone:
                assert c.scores[b, j] == -np.inf, (b, row)
            else:
                assert c.scores[b, j] == scores[b, j]


# ---------------------------------------------------------------------------------------- best_m


def test_best_m_keeps_the_best_first_with_earlier_candidates_first_on_ties() -> None:
    c = cands([[5, 6, 7, 8, 9]], [[0.2, 0.9, 0.5, 0.9, -np.inf]], [[False, True, False, False, False]])
    rows, scores, new = best_m(c, 3)
    assert rows.tolist() == [[6, 8, 7]] and scores.tolist() == [[np.float32(0.9), np.float32(0.9), np.float32(0.5)]]
    assert new.tolist() == [[True, False, False]]
    rows, _, _ = best_m(c, 5)
    assert rows.tolist() == [[6, 8, 7, 5, -1]]  # a -inf candidate is no candidate


# ---------------------------------------------------------------------------------- new-item slot

NAMES = {0: "a", 1: "b", 2: "c", 3: "d", 4: "n1", 5: "n2"}
ROW = {v: k for k, v in NAMES.items()}
CAND_SCORES = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1]


def arm(position: int) -> Arm:
    return Arm(None, NoExploration(), 1.0, 0.0, position)


def chosen_of(picked: list[int], scores: list[float], k: int) -> Chosen:
    """One request's published list as ``choose`` hands it over: ``(1, k)``, -1 / -inf after it."""
    rows = np.full((1, k), -1, I64)
    sc = np.full((1, k), -np.inf)
    rows[0, : len(picked)], sc[0, : len(picked)] = picked, scores
    return Chosen(rows, sc, np.zeros((1, k), bool))


def listed(chosen: Chosen) -> tuple[list[int], list[float], list[bool]]:
    """The valid prefix of the one request's list; after it, only padding."""
    n = int((chosen.rows[0] >= 0).sum())
    assert (chosen.rows[0, :n] >= 0).all() and (chosen.rows[0, n:] == -1).all()
    assert np.isneginf(chosen.scores[0, n:]).all() and not chosen.explored[0, n:].any()
    return chosen.rows[0, :n].tolist(), chosen.scores[0, :n].tolist(), chosen.explored[0, :n].tolist()


def place(picked: list[str], k: int, position: int, *, new: set[str], exclude: set[str] = frozenset()) -> Chosen:  # type: ignore[assignment]
    """The slot over the six candidates a, b, c, d, n1, n2 (best first); ``exclude`` are consumed (masked)."""
    scores = [-np.inf if NAMES[r] in exclude else s for r, s in zip(range(6), CAND_SCORES)]
    c = cands([list(range(6))], [scores], [[NAMES[r] in new for r in range(6)]])
    chosen = chosen_of([ROW[i] for i in picked], [CAND_SCORES[ROW[i]] for i in picked], k)
    _place_new_items(chosen, c, [arm(position)], k)
    return chosen


def names(chosen: Chosen) -> list[str]:
    return [NAMES[r] for r in listed(chosen)[0]]


def test_the_best_new_candidate_is_inserted_at_the_position_and_marked_explored() -> None:
    got = place(["a", "b", "c", "d"], 4, 4, new={"n1", "n2"})
    assert names(got) == ["a", "b", "c", "n1"]
    _, scores, explored = listed(got)
    assert scores == [0.9, 0.8, 0.7, float(np.float32(0.2))] and explored == [False, False, False, True]


def test_insertion_shifts_the_rest_down_when_the_list_is_longer_than_the_position() -> None:
    assert names(place(["a", "b", "c", "d"], 4, 2, new={"n1"})) == ["a", "n1", "b", "c"]


def test_a_new_item_already_at_or_above_the_position_changes_nothing() -> None:
    got = place(["a", "n2", "b", "c"], 4, 3, new={"n1", "n2"})
    assert names(got) == ["a", "n2", "b", "c"] and not got.explored.any()


def test_a_new_item_below_the_position_moves_up() -> None:
    got = place(["a", "b", "c", "n1"], 4, 2, new={"n1"})
    assert names(got) == ["a", "n1", "b", "c"] and listed(got)[2] == [False, True, False, False]


def test_excluded_new_items_are_skipped_and_no_candidate_means_no_change() -> None:
    assert names(place(["a", "b", "c"], 3, 3, new={"n1", "n2"}, exclude={"n1"})) == ["a", "b", "n2"]
    assert names(place(["a", "b", "c"], 3, 3, new={"n1"}, exclude={"n1"})) == ["a", "b", "c"]
    assert names(place(["a", "b", "c"], 3, 3, new=set())) == ["a", "b", "c"]


def test_position_zero_is_off_and_the_position_is_capped_at_k() -> None:
    assert names(place(["a", "b", "c"], 3, 0, new={"n1"})) == ["a", "b", "c"]
    assert names(place(["a", "b", "c"], 3, 10, new={"n1"})) == ["a", "b", "n1"]


def test_a_short_list_gets_the_new_item_appended() -> None:
    assert names(place(["a"], 10, 10, new={"n2"})) == ["a", "n2"]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    n_items=st.integers(0, 12),
    new_flags=st.lists(st.booleans(), min_size=12, max_size=12),
    excluded=st.lists(st.booleans(), min_size=12, max_size=12),
    n_picks=st.integers(0, 12),
    k=st.integers(1, 12),
    position=st.integers(0, 14),
)
def test_slot_invariants(n_items: int, new_flags: list[bool], excluded: list[bool], n_picks: int, k: int, position: int) -> None:
    """(``k >= 1``: the core never ranks for ``k = 0``.)"""
    scores = [(-np.inf if excluded[n] else 1.0 - n / 20) for n in range(n_items)]
    c = cands([list(range(n_items))], [scores], [new_flags[:n_items]]) if n_items else cands([[-1]], [[-np.inf]], [[False]])
    new = {n for n in range(n_items) if new_flags[n]}
    exclude = {n for n in range(n_items) if excluded[n]}
    picks = [n for n in range(n_items) if n not in exclude][: min(n_picks, k)]
    chosen = chosen_of(picks, [scores[n] for n in picks], k)
    _place_new_items(chosen, c, [arm(position)], k)
    got, got_scores, explored = listed(chosen)
    assert len(got) == len(set(got))
    np.testing.assert_allclose(got_scores, [scores[n] for n in got], rtol=1e-6)  # each keeps its own (float32) score
    assert min(len(picks), k) <= len(got) <= min(len(picks) + 1, k)
    assert not set(got) & exclude
    assert set(got) <= set(range(n_items))
    eligible = new - exclude
    placed = None
    if position > 0 and eligible:
        assert set(got[: min(position, k)]) & new, "no new item at or above the position"
        if not set(picks[: min(position, k)]) & new:
            placed = min(eligible)  # the best-scored eligible new item
            assert placed in got[: min(position, k)]
            assert [n for n in got if n != placed] == [n for n in picks if n != placed][: len(got) - 1]  # the rest keep their order
    if placed is None:
        assert got == picks
    assert explored == [n == placed for n in got]  # only the placed item is marked explored


# ------------------------------------------------------------------------- consumed rows in a batch


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=15), st.lists(st.lists(st.integers(0, 60), max_size=3), max_size=12))
def test_consumed_rows_stay_sorted_as_a_batch_adds_to_them(start: list[int], waves: list[list[int]]) -> None:
    """Each snapshot sees every row added so far, sorted, whatever the order they came in; an array
    handed out earlier never changes (requests of earlier events hold it)."""
    start = list(dict.fromkeys(start))
    entry = _Consumed(list(start), set(start))
    taken: list[tuple[np.ndarray, list[int]]] = [(entry.sorted_rows(), sorted(start))]
    for added in waves:
        for row in added:
            if row not in entry.members:  # as the updater adds them: each row once
                entry.rows.append(row)
                entry.members.add(row)
        taken.append((entry.sorted_rows(), sorted(entry.rows)))
    for got, want in taken:
        assert got.dtype == np.int64 and got.tolist() == want

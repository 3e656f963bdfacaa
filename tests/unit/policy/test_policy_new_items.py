"""The new-item slot: a new item at the position or above, nothing excluded, nothing duplicated, K kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.policy.exploration import Pick
from fusionrec.policy.new_items import place_new_item


def picks_of(ids: list[str]) -> list[Pick]:
    return [Pick(i, 1.0 - n / 100, False) for n, i in enumerate(ids)]


def ids(picks: list[Pick]) -> list[str]:
    return [p.item_id for p in picks]


CANDS = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6), ("n1", 0.2), ("n2", 0.1)]


def test_the_best_new_candidate_is_inserted_at_the_position_and_marked_explored() -> None:
    got = place_new_item(picks_of(["a", "b", "c", "d"]), CANDS, 4, 4, new={"n1", "n2"})
    assert ids(got) == ["a", "b", "c", "n1"]
    assert got[-1] == Pick("n1", 0.2, True)
    assert not any(p.explored for p in got[:-1])


def test_insertion_shifts_the_rest_down_when_the_list_is_longer_than_the_position() -> None:
    got = place_new_item(picks_of(["a", "b", "c", "d"]), CANDS, 4, 2, new={"n1"})
    assert ids(got) == ["a", "n1", "b", "c"]


def test_a_new_item_already_at_or_above_the_position_changes_nothing() -> None:
    picks = picks_of(["a", "n2", "b", "c"])
    assert place_new_item(picks, CANDS, 4, 3, new={"n1", "n2"}) == picks


def test_a_new_item_below_the_position_moves_up() -> None:
    got = place_new_item(picks_of(["a", "b", "c", "n1"]), CANDS, 4, 2, new={"n1"})
    assert ids(got) == ["a", "n1", "b", "c"]
    assert got[1].explored


def test_excluded_new_items_are_skipped_and_no_candidate_means_no_change() -> None:
    picks = picks_of(["a", "b", "c"])
    assert ids(place_new_item(picks, CANDS, 3, 3, new={"n1", "n2"}, exclude={"n1"})) == ["a", "b", "n2"]
    assert place_new_item(picks, CANDS, 3, 3, new={"n1"}, exclude={"n1"}) == picks
    assert place_new_item(picks, CANDS, 3, 3, new=set()) == picks


def test_position_zero_is_off_and_the_position_is_capped_at_k() -> None:
    picks = picks_of(["a", "b", "c"])
    assert place_new_item(picks, CANDS, 3, 0, new={"n1"}) == picks
    assert ids(place_new_item(picks, CANDS, 3, 10, new={"n1"})) == ["a", "b", "n1"]


def test_a_short_list_gets_the_new_item_appended() -> None:
    assert ids(place_new_item(picks_of(["a"]), CANDS, 10, 10, new={"n2"})) == ["a", "n2"]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    n_items=st.integers(0, 12),
    new_flags=st.lists(st.booleans(), min_size=12, max_size=12),
    excluded=st.lists(st.booleans(), min_size=12, max_size=12),
    n_picks=st.integers(0, 12),
    k=st.integers(0, 12),
    position=st.integers(0, 14),
)
def test_slot_invariants(
    n_items: int, new_flags: list[bool], excluded: list[bool], n_picks: int, k: int, position: int
) -> None:
    cands = [(f"i{n}", 1.0 - n / 20) for n in range(n_items)]
    new = {i for (i, _), f in zip(cands, new_flags) if f}
    exclude = {i for (i, _), x in zip(cands, excluded) if x}
    picks = picks_of([i for i, _ in cands if i not in exclude][:n_picks])
    got = place_new_item(picks, cands, k, position, new=new, exclude=exclude)
    got_ids = ids(got)
    assert len(got_ids) == len(set(got_ids))
    assert min(len(picks), k) <= len(got) <= min(len(picks) + 1, k)
    assert not set(got_ids) & exclude
    assert set(got_ids) <= {i for i, _ in cands}
    eligible = new - exclude
    if position > 0 and k > 0 and eligible:
        reach = min(position, k)
        assert set(got_ids[:reach]) & new, "no new item at or above the position"
    if position == 0 or not eligible:
        assert got == picks[:k]

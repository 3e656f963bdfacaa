"""The item store's batched hash lookup (``ItemStore.locate``) against its dictionary (``where_hash``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.hashing import stable_hash
from fusionrec.items import ItemStore

PLATFORMS = ["shop", "video", "music"]
change = st.tuples(st.booleans(), st.lists(st.tuples(st.integers(0, 30), st.sampled_from(PLATFORMS)), min_size=1, max_size=8))


@settings(max_examples=60, deadline=None)
@given(st.lists(change, max_size=12))
def test_locate_finds_what_where_hash_finds_after_any_upserts_moves_and_deletes(changes: list[tuple[bool, list[tuple[int, str]]]]) -> None:
    store = ItemStore(2)
    asked = [stable_hash(f"i{n}") for n in range(31)] + [stable_hash("never"), 0, 2**64 - 1]
    for deleting, items in changes:
        ids = [f"i{n}" for n, _ in items]
        if deleting:
            store.delete(ids)
        else:
            store.upsert(ids, [p for _, p in items], np.ones((len(ids), 2), np.float32))
        codes, rows = store.locate(np.array(asked, np.uint64))  # after every change: the table follows the store
        names = list(store.platforms)
        for h, code, row in zip(asked, codes.tolist(), rows.tolist()):
            where = store.where_hash(h)
            assert (None if code < 0 else (names[code], row)) == where
            assert (code < 0) == (row < 0)


def test_locate_on_an_empty_store_finds_nothing() -> None:
    codes, rows = ItemStore(2).locate(np.array([1, 2], np.uint64))
    assert codes.tolist() == [-1, -1] and rows.tolist() == [-1, -1]


def test_a_snapshot_keeps_the_rows_it_was_taken_with_while_the_store_changes() -> None:
    store = ItemStore(2)
    store.upsert(["a", "b", "c"], ["shop", "shop", "video"], np.array([[1, 0], [0, 1], [1, 1]], np.float32))
    store.delete(["b"])
    snap = store.snapshot()
    store.upsert(["a", "d"], ["shop", "shop"], np.array([[5, 5], [6, 6]], np.float32))  # in place, and a new row
    store.delete(["c"])
    assert snap.ids == {"shop": ["a", "b"], "video": ["c"]} and snap.size("shop") == 2
    np.testing.assert_array_equal(snap.mats["shop"], [[1, 0], [0, 1]])
    assert snap.alive["shop"].tolist() == [True, False] and "c" in snap and "c" not in store
    assert snap.where_hash(stable_hash("a")) == ("shop", 0) and snap.where_hash(stable_hash("d")) is None
    assert all(items.index is None for items in snap.platforms.values())
    assert store.size("shop") == 3 and store.mats["shop"][0].tolist() == [5, 5]

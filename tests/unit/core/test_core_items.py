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

"""PersonStates.begin/rollback: a batch the core failed half-way through leaves no state behind."""

from __future__ import annotations

from fusionrec.config import load_config
from stream.partitions import PartitionCache
from stream.state_store import PersonStates


def test_rollback_restores_every_person_and_the_dirty_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config(env={"FUSIONREC_DATA_DIR": str(tmp_path), "FUSIONREC_PARTITIONS": "3"})
    states = PersonStates(cfg, PartitionCache(3))
    states.put("alice", b"a1")
    states.put("bob", b"b1")
    states.take_dirty()

    states.begin()
    states.put("alice", b"a2")
    states.put("alice", b"a3")  # the first value seen is the one restored
    states.put("carol", b"c1")  # new: removed again
    states.rollback()
    assert (states.get("alice"), states.get("bob"), states.get("carol")) == (b"a1", b"b1", None)
    assert states.take_dirty() == {}  # nothing to write to the changelog

    states.begin()
    states.put("bob", b"b2")
    states.commit()
    states.put("alice", b"a4")  # after commit: not journaled
    states.rollback()  # nothing to undo
    assert (states.get("alice"), states.get("bob")) == (b"a4", b"b2")
    assert states.take_dirty() == {"bob": b"b2", "alice": b"a4"}

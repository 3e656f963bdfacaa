"""Person-state snapshots of the worker (the file part of ``stream.state_store``, no broker): what is
written is read back exactly, and a snapshot that does not match the changelog or does not read whole
is never used (the worker then reads the changelog)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionrec.config import Config, WorkerConfig
from stream.partitions import PartitionCache
from stream.state_store import PartitionState, PersonStates


def make(data_dir: Path, app_id: str = "recs") -> PersonStates:
    cfg = Config(platforms=("shop",), worker=WorkerConfig(data_dir=str(data_dir), app_id=app_id))
    return PersonStates(cfg, PartitionCache(cfg.kafka.partitions))


PEOPLE = {"alice": b"\x00\x01state", "bob/é": b"", "carol": bytes(range(256)) * 3}


def test_a_snapshot_reads_back_what_was_written(tmp_path: Path) -> None:
    states = make(tmp_path)
    states.write_snapshots([(0, 17, dict(PEOPLE)), (3, 0, {})])
    assert sorted(p.name for p in states.directory.iterdir()) == ["state-0.bin", "state-3.bin"]  # no temp files left
    back = make(tmp_path)._snapshot(0, 10, 20)
    assert back == PartitionState(PEOPLE, 17)
    assert make(tmp_path)._snapshot(3, 0, 0) == PartitionState({}, 0)
    assert make(tmp_path)._snapshot(5, 0, 100) is None  # never written


def test_a_new_snapshot_replaces_the_old_one(tmp_path: Path) -> None:
    states = make(tmp_path)
    states.write_snapshots([(1, 5, {"a": b"1"})])
    states.write_snapshots([(1, 9, {"b": b"2"})])
    assert states._snapshot(1, 0, 10) == PartitionState({"b": b"2"}, 9)


def test_the_snapshot_copies_are_of_the_owned_partitions_only(tmp_path: Path) -> None:
    states = make(tmp_path)
    for person in ("p1", "p2", "p3", "p4", "p5", "p6"):
        states.put(person, person.encode())
    owned = sorted(states.partitions)[:1]
    states.owned = set(owned)
    copies = states.snapshot_copies()
    assert [p for p, _, _ in copies] == owned
    partition, position, people = copies[0]
    assert people == states.partitions[partition].people and people is not states.partitions[partition].people
    states.put(next(iter(people)), b"changed later")  # the copy does not follow
    assert all(v != b"changed later" for v in people.values())


@pytest.mark.parametrize("start, end", [(18, 30), (0, 16)])
def test_a_snapshot_outside_the_changelog_is_not_used(tmp_path: Path, start: int, end: int) -> None:
    """A changelog that was recreated (or compacted past the snapshot) starts over from the log."""
    make(tmp_path).write_snapshots([(0, 17, dict(PEOPLE))])
    assert make(tmp_path)._snapshot(0, start, end) is None


def test_a_snapshot_of_another_changelog_topic_is_not_used(tmp_path: Path) -> None:
    make(tmp_path, app_id="other").write_snapshots([(0, 17, dict(PEOPLE))])
    assert make(tmp_path, app_id="recs")._snapshot(0, 0, 100) is None


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10_000), flip=st.booleans())
def test_a_damaged_snapshot_is_never_used(tmp_path: Path, cut: int, flip: bool) -> None:
    """Truncated anywhere (a full disk, a torn copy) or with its magic damaged: None, never part of it."""
    states = make(tmp_path)
    states.write_snapshots([(0, 17, dict(PEOPLE))])
    path = states.directory / "state-0.bin"
    whole = path.read_bytes()
    damaged = (b"X" + whole[1:]) if flip else whole[: cut % len(whole)]
    path.write_bytes(damaged)
    try:
        assert make(tmp_path)._snapshot(0, 0, 100) is None, f"a damaged snapshot ({len(damaged)} of {len(whole)} bytes) was used"
    finally:
        path.write_bytes(whole)

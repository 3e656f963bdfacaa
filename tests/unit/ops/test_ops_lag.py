"""Lag rows from (end offsets, committed offsets): the pure half of stream/lag.py."""

from __future__ import annotations

from aiokafka import TopicPartition as TP

from fusionrec.config import load_config
from stream.lag import LagRow, compute_lag, format_lag, worker_lag_topics


def test_lag_is_end_minus_committed_per_partition() -> None:
    rows = compute_lag("g", {TP("b", 1): 9, TP("a", 0): 10, TP("b", 0): 4}, {TP("a", 0): 10, TP("b", 0): 1, TP("b", 1): 2})
    assert [(r.topic, r.partition, r.lag) for r in rows] == [("a", 0, 0), ("b", 0, 3), ("b", 1, 7)]
    assert all(r.group == "g" for r in rows)


def test_uncommitted_partitions_count_from_their_first_retained_offset() -> None:
    end = {TP("t", 0): 100, TP("t", 1): 0, TP("t", 2): 50}
    rows = compute_lag("g", end, {TP("t", 2): -1}, begin_offsets={TP("t", 0): 40, TP("t", 2): 45})
    assert [(r.partition, r.committed, r.lag) for r in rows] == [(0, None, 60), (1, None, 0), (2, None, 5)]


def test_lag_never_goes_negative() -> None:
    (row,) = compute_lag("g", {TP("t", 0): 5}, {TP("t", 0): 9})
    assert row.lag == 0 and row.committed == 9


def test_committed_offsets_of_other_topics_are_ignored() -> None:
    rows = compute_lag("g", {TP("t", 0): 5}, {TP("t", 0): 2, TP("other", 0): 1})
    assert [(r.topic, r.lag) for r in rows] == [("t", 3)]


def test_a_worker_group_reads_every_events_topic_and_by_person() -> None:
    cfg = load_config(env={"FUSIONREC_PLATFORMS": "shop,video", "FUSIONREC_TOPIC_PREFIX": "x."})
    assert worker_lag_topics(cfg) == ["x.events.shop", "x.events.video", "x.by-person"]


def test_terminal_table_has_a_line_per_partition_and_totals() -> None:
    rows = [LagRow("g", "x.events.shop", 0, 10, 7, 3), LagRow("g", "x.events.shop", 1, 5, None, 5), LagRow("g", "x.by-person", 0, 3, 3, 0)]
    text = format_lag(rows).splitlines()
    assert text[0].split() == ["GROUP", "TOPIC", "PARTITION", "END-OFFSET", "COMMITTED", "LAG"]
    assert text[1].split() == ["g", "x.events.shop", "0", "10", "7", "3"]
    assert text[2].split() == ["g", "x.events.shop", "1", "5", "-", "5"]
    assert text[4].split() == ["g", "x.events.shop", "*", "8"]
    assert text[5].split() == ["g", "x.by-person", "*", "0"]

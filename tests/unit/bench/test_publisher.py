"""The open-loop publisher's encoding (no broker) and the collector's event-id parsing."""

from __future__ import annotations

from pathlib import Path

import orjson
from aiokafka.partitioner import DefaultPartitioner

from fusionrec.config import LimitsConfig
from fusionrec.contracts import decode_event
from stream.bench.collector import Collector, event_id_of
from stream.bench.publisher import kafka_partition, prepare
from stream.bench.synthetic import SyntheticSpec, generate


def test_partition_is_kafkas_default_partitioner() -> None:
    for key in (b"su0000001", b"A1WMGV26L7TZJF", b"", b"\xff\x00x"):
        assert kafka_partition(key, 4) == DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3])
    assert kafka_partition(b"21", 4) == kafka_partition(b"21", 4) and 0 <= kafka_partition(b"21", 7) < 7


def test_prepared_events_are_valid_unique_and_on_schedule(tmp_path: Path) -> None:
    wl = generate(SyntheticSpec(items=300, people=400, platforms=2, events=1000, topics=4), tmp_path / "w")
    topic_of = lambda p: f"x.events.{p}"  # noqa: E731
    ev = prepare(wl, tag="run1-r100", start=990, count=30, ts0=1_800_000_000.0, rate=100.0, topic_of=topic_of,
                 partitions={topic_of(p): 4 for p in wl.platforms})  # fmt: skip
    assert len(ev) == 30
    decoded = [
        decode_event(v, platforms=set(wl.platforms), event_types=set(wl.event_types), limits=LimitsConfig(), now=1_800_000_000.0)
        for v in ev.values
    ]
    assert [e.event_id for e in decoded] == [f"run1-r100:{i}" for i in range(30)]
    assert [e.ts for e in decoded] == [round(1_800_000_000.0 + i / 100, 3) for i in range(30)]
    # the workload cycles: event 10 of the step is workload event 0
    assert decoded[10].user_id == str(wl.users[wl.ev_user[0]]) and decoded[10].item_id == str(wl.items[wl.ev_item[0]])
    for e, key, t in zip(decoded, ev.keys, ev.tp):
        topic, partition = ev.targets[t]
        assert key == e.user_id.encode() and topic == topic_of(e.platform) and partition == kafka_partition(key, 4)


def test_event_id_of_recommendation_bytes() -> None:
    rec = orjson.dumps({"v": 1, "person_id": "p", "platform": "shop", "event_id": "run-r200:17", "items": [{"item_id": "i"}]})
    assert event_id_of(rec) == b"run-r200:17"
    assert event_id_of(orjson.dumps({"event_id": 'a"b'})) == b'a"b'  # escaped: parsed properly
    assert event_id_of(b"not json") is None and event_id_of(b'{"x": 1}') is None


def test_collector_counts_first_answers_repeats_and_strangers() -> None:
    c = Collector(kafka=None, recs_topic="recs")
    step = c.register("run-r100", 3)
    for value in (b'{"event_id":"run-r100:1"}', b'{"event_id":"run-r100:1"}', b'{"event_id":"run-r100:9"}', b'{"event_id":"other:0"}'):
        c._record(value, 1234.0, 0.0)
    assert step.answered == 1 and step.repeats == 1 and c.unknown == 2
    assert step.received_ms[1] == 1234.0 and step.received_ms[0] != step.received_ms[0]  # NaN: not answered

"""Consumer lag, read from the broker: log end offset minus the group's committed offset.

The figures come from Kafka itself (the group's committed offsets and the partitions' end offsets),
not from the worker's memory, so they stay readable while a worker is paused, stuck or dead: the
worker's own metrics endpoint, ``fusionrec dashboard`` and ``fusionrec lag`` all use this module.

    >>> from aiokafka import TopicPartition as TP
    >>> rows = compute_lag("g", {TP("t", 0): 10, TP("t", 1): 5}, {TP("t", 0): 7})
    >>> [(r.topic, r.partition, r.end_offset, r.committed, r.lag) for r in rows]
    [('t', 0, 10, 7, 3), ('t', 1, 5, None, 5)]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fusionrec.config import Config, KafkaConfig
from stream.kafka_settings import client_kwargs

log = logging.getLogger(__name__)

__all__ = ["LagRow", "compute_lag", "LagReader", "worker_lag_topics", "read_lag", "format_lag"]


@dataclass(frozen=True)
class LagRow:
    group: str
    topic: str
    partition: int
    end_offset: int
    committed: int | None
    """None: the group has committed nothing for this partition yet."""
    lag: int


def compute_lag(
    group: str,
    end_offsets: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int | None],
    begin_offsets: Mapping[TopicPartition, int] | None = None,
) -> list[LagRow]:
    """Lag rows for every partition that has an end offset, sorted by topic and partition.

    A partition the group never committed counts from its first retained offset (``begin_offsets``,
    0 when unknown): everything in it is still to be read.  A committed offset past the end (a topic
    truncated and recreated) counts as no lag, never as negative lag.
    """
    rows = []
    for tp in sorted(end_offsets, key=lambda t: (t.topic, t.partition)):
        end = int(end_offsets[tp])
        done = committed.get(tp)
        if done is not None and done < 0:  # the admin API's "no offset"
            done = None
        start = done if done is not None else (begin_offsets or {}).get(tp, 0)
        rows.append(LagRow(group, tp.topic, tp.partition, end, done, max(0, end - int(start))))
    return rows


def worker_lag_topics(cfg: Config) -> list[str]:
    """The topics a worker's consumer group reads: every platform's events topic and by-person."""
    return [cfg.kafka.events_topic(p) for p in cfg.platforms] + [cfg.kafka.by_person_topic]


class LagReader:
    """Long-lived clients (an admin client and a group-less consumer) that read lag on demand."""

    def __init__(self, kafka: KafkaConfig, group: str, topics: Sequence[str]) -> None:
        self.kafka = kafka
        self.group = group
        self.topics = list(topics)
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        kwargs = client_kwargs(self.kafka)
        self._admin = AIOKafkaAdminClient(**kwargs, client_id="fusionrec-lag")
        self._consumer = AIOKafkaConsumer(**kwargs, group_id=None, enable_auto_commit=False, client_id="fusionrec-lag")
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    await client.close() if isinstance(client, AIOKafkaAdminClient) else await client.stop()
                except Exception:  # closing is best effort
                    log.debug("closing a lag client failed", exc_info=True)
        self._admin = self._consumer = None

    async def __aenter__(self) -> LagReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _partitions(self) -> list[TopicPartition]:
        assert self._consumer is not None
        if any(not self._consumer.partitions_for_topic(t) for t in self.topics):
            await self._consumer._client.force_metadata_update()  # no public equivalent
        return [
            TopicPartition(t, p) for t in self.topics for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]

    async def read(self) -> list[LagRow]:
        """One reading: end offsets, first offsets and the group's committed offsets, as lag rows."""
        if self._consumer is None or self._admin is None:
            await self.start()
        assert self._consumer is not None and self._admin is not None
        partitions = await self._partitions()
        if not partitions:
            return []
        end = await self._consumer.end_offsets(partitions)
        begin = await self._consumer.beginning_offsets(partitions)
        offsets = await self._admin.list_consumer_group_offsets(self.group, partitions=partitions)
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        return compute_lag(self.group, end, committed, begin)


async def read_lag(kafka: KafkaConfig, group: str, topics: Sequence[str], timeout_s: float = 15.0) -> list[LagRow]:
    """One reading with short-lived clients (the ``fusionrec lag`` command)."""
    async with LagReader(kafka, group, topics) as reader:
        return await asyncio.wait_for(reader.read(), timeout_s)


def format_lag(rows: Iterable[LagRow]) -> str:
    """A terminal table: one line per group/topic/partition, then a total per group and topic."""
    rows = list(rows)
    header = ("GROUP", "TOPIC", "PARTITION", "END-OFFSET", "COMMITTED", "LAG")
    table = [header] + [
        (r.group, r.topic, str(r.partition), str(r.end_offset), "-" if r.committed is None else str(r.committed), str(r.lag))
        for r in rows
    ]
    totals: dict[tuple[str, str], int] = {}
    for r in rows:
        totals[(r.group, r.topic)] = totals.get((r.group, r.topic), 0) + r.lag
    table += [(g, t, "*", "", "", str(n)) for (g, t), n in totals.items()]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in table]
    return "\n".join(line.rstrip() for line in lines)

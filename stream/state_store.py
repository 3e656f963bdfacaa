"""Person state of the by-person partitions a worker owns: in memory, its changelog, local snapshots.

Every person's packed state (``fusionrec.state``) lives in the dict of its by-person partition.  A
micro-batch's changed people go to the compacted changelog topic ``<app_id>-person-state-changelog``
(one record per person and batch, on the same partition number), and a worker that is assigned a
partition rebuilds it from there before it processes any of its events.

So that a restart does not read the whole changelog, a worker writes a snapshot of each partition
it owns (``state-<partition>.bin`` under its data dir, written in a thread from a copy, renamed into
place) at every checkpoint, with the changelog offset it covers; on assignment it loads the
snapshot and reads the changelog from that offset only.  A snapshot is used only if its topic
matches and its offset lies within the changelog (a recreated topic starts over); the changelog
stays the source of truth, the snapshot only a shortcut into it.  A partition that comes back to a
worker that still holds it in memory reads only what others wrote meanwhile.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from fusionrec.config import Config
from stream.kafka_settings import client_kwargs

log = logging.getLogger(__name__)

__all__ = ["PartitionState", "PersonStates", "changelog_topic"]

SNAPSHOT_MAGIC = b"FRS1"
_HEAD = struct.Struct("<4sHqI")  # magic, topic length, changelog position, entries
_ENTRY = struct.Struct("<HI")  # key length, value length


def changelog_topic(cfg: Config) -> str:
    from stream.topics import person_state_changelog

    return person_state_changelog(cfg)


@dataclass
class PartitionState:
    """One partition's people and the changelog offset they reflect (the next one to read)."""

    people: dict[str, bytes] = field(default_factory=dict)
    position: int = 0


class PersonStates:
    """The ``StateStore`` of the core over the partitions this worker owns, plus what changed."""

    def __init__(self, cfg: Config, partition_of: object) -> None:
        self.cfg = cfg
        self.topic = changelog_topic(cfg)
        self.partition_of = partition_of  # callable person -> partition
        self.partitions: dict[int, PartitionState] = {}
        self.owned: set[int] = set()
        self.dirty: dict[str, bytes] = {}
        self.directory = Path(cfg.worker.data_dir).expanduser() / "state"
        self._undo: dict[str, bytes | None] | None = None  # between begin() and commit(): states before the first put
        self._dirty_before: dict[str, bytes] = {}

    # ------------------------------------------------------------------ the core's StateStore

    def get(self, person: str) -> bytes | None:
        part = self.partitions.get(self.partition_of(person))  # type: ignore[operator]
        return part.people.get(person) if part is not None else None

    def put(self, person: str, raw: bytes) -> None:
        p = self.partition_of(person)  # type: ignore[operator]
        people = self.partitions.setdefault(p, PartitionState()).people
        if self._undo is not None and person not in self._undo:
            self._undo[person] = people.get(person)
        people[person] = raw
        self.dirty[person] = raw

    def begin(self) -> None:
        """Remember what each person's state was before the puts that follow, until :meth:`commit`."""
        self._undo = {}
        self._dirty_before = dict(self.dirty)

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        """Undo every put since :meth:`begin` (the core failed half-way through a batch)."""
        undo, self._undo = self._undo, None
        if undo is None:
            return
        for person, raw in undo.items():
            people = self.partitions[self.partition_of(person)].people  # type: ignore[operator]
            if raw is None:
                people.pop(person, None)
            else:
                people[person] = raw
        self.dirty = self._dirty_before

    def take_dirty(self) -> dict[str, bytes]:
        dirty, self.dirty = self.dirty, {}
        return dirty

    def written(self, partition: int, next_offset: int) -> None:
        """Our own changelog records up to ``next_offset`` are acknowledged: the partition reflects them."""
        part = self.partitions.get(partition)
        if part is not None and next_offset > part.position:
            part.position = next_offset

    def __len__(self) -> int:
        return sum(len(p.people) for p in self.partitions.values())

    # ------------------------------------------------------------------ restore

    async def restore(self, partitions: Iterable[int]) -> dict[int, int]:
        """Bring each partition up to the changelog's end (snapshot first when there is a usable one);
        returns the records read per partition."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        consumer = AIOKafkaConsumer(**client_kwargs(self.cfg.kafka), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in wanted]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            read: dict[int, int] = {}
            for tp in tps:
                part = self.partitions.get(tp.partition)
                if part is None or not (starts[tp] <= part.position <= ends[tp]):
                    part = self._snapshot(tp.partition, starts[tp], ends[tp]) or PartitionState(position=starts[tp])
                    self.partitions[tp.partition] = part
                read[tp.partition] = await self._catch_up(consumer, tp, part, ends[tp])
            self.owned.update(wanted)
            return read
        finally:
            await consumer.stop()

    async def _catch_up(self, consumer: AIOKafkaConsumer, tp: TopicPartition, part: PartitionState, end: int) -> int:
        if part.position >= end:
            return 0
        consumer.seek(tp, part.position)
        n = 0
        while part.position < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10000)
            for record in batch.get(tp, ()):
                key = record.key.decode() if record.key else ""
                if record.value is None:
                    part.people.pop(key, None)
                else:
                    part.people[key] = record.value
                part.position = record.offset + 1
                n += 1
            if not batch:
                part.position = max(part.position, await consumer.position(tp))  # compacted away up to here
        return n

    def release(self, partitions: Iterable[int]) -> None:
        """No longer ours: keep the memory (it is read back incrementally if the partition returns)."""
        self.owned.difference_update(partitions)

    # ------------------------------------------------------------------ snapshots

    def snapshot_copies(self) -> list[tuple[int, int, dict[str, bytes]]]:
        """Shallow copies of the owned partitions (values are immutable bytes), cheap on the event loop."""
        return [(p, self.partitions[p].position, dict(self.partitions[p].people)) for p in sorted(self.owned) if p in self.partitions]

    def write_snapshots(self, copies: list[tuple[int, int, dict[str, bytes]]]) -> None:
        """Write each copy atomically (call in a thread)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        topic = self.topic.encode()
        for partition, position, people in copies:
            parts = [_HEAD.pack(SNAPSHOT_MAGIC, len(topic), position, len(people)), topic]
            entry = _ENTRY.pack
            for key, value in people.items():
                raw = key.encode()
                parts += (entry(len(raw), len(value)), raw, value)
            fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"".join(parts))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / f"state-{partition}.bin")

    def _snapshot(self, partition: int, start: int, end: int) -> PartitionState | None:
        path = self.directory / f"state-{partition}.bin"
        if not path.exists():
            return None
        began = time.monotonic()
        try:
            data = path.read_bytes()
            magic, topic_len, position, count = _HEAD.unpack_from(data, 0)
            at = _HEAD.size
            topic = data[at : at + topic_len].decode()
            at += topic_len
            if magic != SNAPSHOT_MAGIC or topic != self.topic or not start <= position <= end:
                log.warning("state snapshot %s does not match the changelog (%s at %d, log %d..%d): reading the changelog", path, topic, position, start, end)
                return None
            people: dict[str, bytes] = {}
            for _ in range(count):
                key_len, value_len = _ENTRY.unpack_from(data, at)
                at += _ENTRY.size
                if at + key_len + value_len > len(data):  # a slice past the end would be silently short
                    raise ValueError(f"entry {len(people)} runs past the end of the file ({len(data)} bytes)")
                key = data[at : at + key_len].decode()
                at += key_len
                people[key] = data[at : at + value_len]
                at += value_len
            if at != len(data):
                raise ValueError(f"{len(data) - at} bytes after the last of {count} entries")
        except (OSError, struct.error, UnicodeDecodeError, ValueError) as exc:
            log.warning("state snapshot %s unreadable (%s): reading the changelog", path, exc)
            return None
        log.info("partition %d: %d people from %s (changelog offset %d) in %.2fs", partition, len(people), path.name, position, time.monotonic() - began)
        return PartitionState(people, position)

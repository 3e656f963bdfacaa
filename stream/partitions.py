"""Which by-person partition a person belongs to (Kafka's default partitioner on the person id)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["person_partition", "PartitionCache"]


def person_partition(person: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2) on the person id: the by-person topic, the person-state
    changelog and the recommendations topic all put a person on this partition number."""
    return (murmur2(person.encode()) & 0x7FFFFFFF) % partitions


class PartitionCache:
    """``person_partition`` memoised for the most active people: aiokafka's murmur2 is pure Python
    (about 5 µs a call), and the same people come back event after event."""

    def __init__(self, partitions: int, max_size: int = 200_000) -> None:
        self.partitions = partitions
        self.max_size = max_size
        self._cache: dict[str, int] = {}

    def __call__(self, person: str) -> int:
        part = self._cache.get(person)
        if part is None:
            if len(self._cache) >= self.max_size:
                self._cache.clear()  # cheaper than LRU bookkeeping on every hit; refills within a batch
            part = self._cache[person] = person_partition(person, self.partitions)
        return part

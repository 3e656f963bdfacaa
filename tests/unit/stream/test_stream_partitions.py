"""The by-person partitioner of the worker: the memo must agree with Kafka's murmur2 partitioner."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from stream.partitions import PartitionCache, person_partition


def test_person_partition_is_kafkas_default_partitioner() -> None:
    kafka = DefaultPartitioner()
    for n in range(500):
        person = f"person-{n}"
        assert person_partition(person, 12) == kafka(person.encode(), list(range(12)), list(range(12)))


def test_cache_agrees_with_the_partitioner_and_stays_bounded() -> None:
    cache = PartitionCache(7, max_size=50)
    for round_ in range(3):
        for n in range(120):
            person = f"u{n}"
            assert cache(person) == person_partition(person, 7), (round_, person)
            assert len(cache._cache) <= 50

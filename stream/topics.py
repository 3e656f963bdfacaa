"""Create the topics fusionrec uses, with the configured partitions and replication, and check them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from fusionrec.config import Config
from fusionrec.errors import ConfigError, TopicError
from stream.kafka_settings import client_kwargs

log = logging.getLogger(__name__)

METADATA_WAIT_S = 30.0
"""How long a just-created topic may take to show in the cluster metadata."""


def topic_names(cfg: Config) -> list[str]:
    k = cfg.kafka
    return [
        *(k.events_topic(p) for p in cfg.platforms),
        k.items_topic,
        k.identity_topic,
        k.by_person_topic,
        k.recs_topic,
        k.dlq_topic,
    ]


async def ensure_topics(cfg: Config) -> None:
    """Create missing topics (existing ones are left as they are), then check their partitions."""
    admin = AIOKafkaAdminClient(**client_kwargs(cfg.kafka))
    await admin.start()
    try:
        names = topic_names(cfg)
        existing = set(await admin.list_topics())
        missing = [t for t in names if t not in existing]
        if missing:
            new = [NewTopic(t, cfg.kafka.partitions, cfg.kafka.replication_factor) for t in missing]
            raise_for_create_errors((await admin.create_topics(new)).topic_errors)
            log.info("created topics %s", missing)
        partitions = await wait_for_topics(admin, names)
        # events are routed to by-person partitions by hash modulo kafka.partitions: they must agree
        check_partitions(partitions, [cfg.kafka.by_person_topic], cfg.kafka.partitions)
    finally:
        await admin.close()


def raise_for_create_errors(topic_errors: Iterable[tuple[Any, ...]]) -> None:
    """CreateTopics answers with an error code per topic instead of raising: turn them into one error.

    TOPIC_ALREADY_EXISTS is not an error: another worker won the race.
    """
    failed: dict[str, list[str]] = {}  # one line per distinct error, naming its topics
    for topic, code, *message in topic_errors:
        if code == 0:
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue
        detail = message[0] if message and message[0] else error.description
        failed.setdefault(f"{error.message}: {detail}", []).append(topic)
    if failed:
        lines = [f"{', '.join(topics)}: {error}" for error, topics in failed.items()]
        raise TopicError("cannot create topics (Kafka's answer per topic):\n  " + "\n  ".join(lines))


async def wait_for_topics(
    admin: AIOKafkaAdminClient, topics: list[str], *, timeout_s: float = METADATA_WAIT_S
) -> dict[str, int]:
    """The partition count of every topic, once all show in the cluster metadata (a just-created topic
    takes a moment); a TopicError names those that never do."""
    deadline = time.monotonic() + timeout_s
    while True:
        # all topics: a metadata request naming a missing topic would auto-create it on many brokers
        described = await admin.describe_topics()
        found = {t["topic"]: len(t.get("partitions") or ()) for t in described if t["topic"] in topics}
        absent = [t for t in topics if not found.get(t)]
        if not absent:
            return found
        if time.monotonic() > deadline:
            raise TopicError(
                f"topics {absent} do not show in the cluster metadata after {timeout_s:.0f}s; were they created?"
            )
        await asyncio.sleep(0.1)


def check_partitions(partitions: Mapping[str, int], topics: list[str], expected: int) -> None:
    """Every topic of ``topics`` has ``expected`` partitions."""
    for topic in topics:
        if partitions[topic] != expected:
            raise ConfigError(
                f"topic {topic} has {partitions[topic]} partitions but kafka.partitions is {expected}; "
                "set FUSIONREC_PARTITIONS to match (or use a new topic prefix)"
            )

"""Create the topics fusionrec uses, with the configured partitions and replication."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from fusionrec.config import Config
from fusionrec.errors import ConfigError
from stream.kafka_settings import client_kwargs

log = logging.getLogger(__name__)


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
    """Create missing topics; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(**client_kwargs(cfg.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_names(cfg) if t not in existing]
        if missing:
            new = [NewTopic(t, cfg.kafka.partitions, cfg.kafka.replication_factor) for t in missing]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker created them first
            log.info("created topics %s", missing)
        await _check_partitions(admin, cfg.kafka.by_person_topic, cfg.kafka.partitions)
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, topic: str, expected: int) -> None:
    """Events are routed to by-person partitions by hash modulo ``kafka.partitions``: they must agree."""
    for _ in range(50):
        described = await admin.describe_topics([topic])
        partitions = described[0].get("partitions") if described else None
        if partitions:
            if len(partitions) != expected:
                raise ConfigError(
                    f"topic {topic} has {len(partitions)} partitions but kafka.partitions is {expected}; "
                    "set FUSIONREC_PARTITIONS to match (or use a new topic prefix)"
                )
            return
        await asyncio.sleep(0.1)  # just created: metadata not propagated yet

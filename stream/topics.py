"""Create the topics fusionrec uses, with the configured partitions and replication."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from fusionrec.config import Config
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
        if not missing:
            return
        new = [NewTopic(t, cfg.kafka.partitions, cfg.kafka.replication_factor) for t in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another worker created them first
        log.info("created topics %s", missing)
    finally:
        await admin.close()

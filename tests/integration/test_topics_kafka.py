"""Topics on the real broker: creation errors are raised, not swallowed."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
import two_platforms as world
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import run

from fusionrec.config import Config, load_config
from fusionrec.errors import TopicError
from stream.topics import ensure_topics, topic_names, wait_for_topics


def config(bootstrap: str, **env: str) -> Config:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return load_config(
        env={
            "FUSIONREC_KAFKA_BOOTSTRAP": bootstrap,
            "FUSIONREC_PLATFORMS": ",".join(world.PLATFORMS),
            "FUSIONREC_TOPIC_PREFIX": f"{prefix}.",
            "FUSIONREC_APP_ID": prefix,
            **env,
        }
    )


async def with_admin(bootstrap: str, use: Callable[[AIOKafkaAdminClient], Awaitable[object]]) -> object:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await use(admin)
    finally:
        await admin.close()


def existing_topics(bootstrap: str) -> set[str]:
    return set(run(with_admin(bootstrap, lambda admin: admin.list_topics())))  # type: ignore[call-overload]


# ----------------------------------------------------------------------------------- creation errors


def test_a_topic_the_cluster_cannot_create_is_a_clear_error(bootstrap: str) -> None:
    async def brokers(admin: AIOKafkaAdminClient) -> int:
        return len((await admin.describe_cluster())["brokers"])

    too_many = int(run(with_admin(bootstrap, brokers))) + 1  # type: ignore[call-overload]
    cfg = config(bootstrap, FUSIONREC_REPLICATION_FACTOR=str(too_many))
    with pytest.raises(TopicError) as info:
        run(ensure_topics(cfg))
    message = str(info.value)
    assert "INVALID_REPLICATION_FACTOR" in message
    assert all(topic in message for topic in topic_names(cfg)), message
    # and nothing was created behind our back (a metadata request naming a topic auto-creates it)
    assert not existing_topics(bootstrap) & set(topic_names(cfg))


def test_waiting_for_topics_raises_when_one_never_shows(bootstrap: str) -> None:
    cfg = config(bootstrap)
    run(ensure_topics(cfg))
    missing = f"t{uuid.uuid4().hex[:10]}.by-person"

    async def wait(admin: AIOKafkaAdminClient) -> dict[str, int]:
        return await wait_for_topics(admin, [*topic_names(cfg), missing], timeout_s=2)

    with pytest.raises(TopicError, match=missing) as info:
        run(with_admin(bootstrap, wait))
    assert cfg.kafka.items_topic not in str(info.value)
    assert missing not in existing_topics(bootstrap)  # waiting did not auto-create it

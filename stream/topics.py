"""Create the topics fusionrec uses, with the configured partitions and replication, and check them.

``topic_configs`` is the one list of topics, each with the topic-level configs it is created with.
The catalog topics (items, identity) and the person-state changelog are compacted: every worker
rebuilds its catalog and identity map from offset 0 of the first two, and its person state from the
third, so what they hold must be the last value of every key, not the last week of messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from fusionrec.config import Config
from fusionrec.errors import ConfigError, TopicError
from stream.kafka_settings import client_kwargs

log = logging.getLogger(__name__)

COMPACTED: Mapping[str, str] = {"cleanup.policy": "compact"}
"""Keep the last value of every key (a null value, a tombstone, deletes the key)."""

METADATA_WAIT_S = 30.0
"""How long a just-created topic may take to show in the cluster metadata."""


def person_state_changelog(cfg: Config) -> str:
    """The changelog topic of the worker's person-state table (faust names it ``<app id>-<table>-changelog``)."""
    return f"{cfg.worker.app_id}-person-state-changelog"


def topic_configs(cfg: Config) -> dict[str, Mapping[str, str]]:
    """Every topic fusionrec uses, in creation order, with its topic-level configs."""
    k = cfg.kafka
    return {
        **{k.events_topic(p): {} for p in cfg.platforms},
        k.items_topic: COMPACTED,  # keyed by item id
        k.identity_topic: COMPACTED,  # keyed by <platform>:<user id>
        k.by_person_topic: {},
        k.recs_topic: {},
        k.dlq_topic: {},
        person_state_changelog(cfg): COMPACTED,  # keyed by person id
    }


def topic_names(cfg: Config) -> list[str]:
    return list(topic_configs(cfg))


def copartitioned_topics(cfg: Config) -> list[str]:
    """Topics whose partition count must be ``kafka.partitions``: events are routed to by-person
    partitions by hash modulo that number, and a person's state lives in the same changelog partition
    (and the person's recommendations on the same recommendations partition)."""
    return [cfg.kafka.by_person_topic, person_state_changelog(cfg), cfg.kafka.recs_topic]


async def ensure_topics(cfg: Config) -> None:
    """Check the topics that exist, create the missing ones, then check them all: partitions and compaction.

    Existing topics are never altered; one that is not as required is an error naming the fix.  The
    topics found are checked *before* anything is created: a topic another client had the broker
    auto-create (its num.partitions, cleanup.policy=delete) is refused with the cluster left as it
    was, so the fix the error names (e.g. FUSIONREC_PARTITIONS to match that topic) still applies.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(cfg.kafka))
    await admin.start()
    try:
        k = cfg.kafka
        configs = topic_configs(cfg)
        compacted = [t for t, c in configs.items() if c.get("cleanup.policy") == "compact"]
        existing = set(await admin.list_topics())
        present = [t for t in configs if t in existing]
        if present:
            partitions = await wait_for_topics(admin, present)
            check_partitions(partitions, [t for t in copartitioned_topics(cfg) if t in partitions], k.partitions, k.bootstrap_servers)
            await check_compacted(admin, [t for t in compacted if t in existing], k.bootstrap_servers)
        missing = [t for t in configs if t not in existing]
        if missing:
            new = [NewTopic(t, k.partitions, k.replication_factor, topic_configs=dict(configs[t])) for t in missing]
            raise_for_create_errors((await admin.create_topics(new)).topic_errors)
            log.info("created topics %s", missing)
            # another client may have created some of them meanwhile: check again
            partitions = await wait_for_topics(admin, list(configs))
            check_partitions(partitions, copartitioned_topics(cfg), k.partitions, k.bootstrap_servers)
            await check_compacted(admin, compacted, k.bootstrap_servers)
    finally:
        await admin.close()


def raise_for_create_errors(topic_errors: Iterable[tuple[Any, ...]]) -> None:
    """CreateTopics answers with an error code per topic instead of raising: turn them into one error.

    TOPIC_ALREADY_EXISTS is not an error: another worker won the race (its settings are checked next).
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


def check_partitions(partitions: Mapping[str, int], topics: list[str], expected: int, bootstrap: str = "<bootstrap>") -> None:
    """Every topic of ``topics`` has ``expected`` partitions; else one error naming each topic that has
    not, and the fixes."""
    wrong = {topic: partitions[topic] for topic in topics if partitions[topic] != expected}
    if not wrong:
        return
    lines = [f"topic {topic} has {n} partitions but kafka.partitions is {expected}" for topic, n in wrong.items()]
    counts = {partitions[t] for t in topics}
    fixes = []
    if len(counts) == 1:
        fixes.append(f"set FUSIONREC_PARTITIONS={counts.pop()} to match")
    fixes.append(
        "if a client created the topic before the first worker (the broker auto-creates a topic a producer or "
        "consumer names, with its num.partitions) and it holds nothing you need, delete it: "
        + "; ".join(f"kafka-topics.sh --bootstrap-server {bootstrap} --delete --topic {topic}" for topic in wrong)
    )
    fixes.append("or use a new topic prefix (FUSIONREC_TOPIC_PREFIX) and app id (FUSIONREC_APP_ID)")
    raise ConfigError(
        "the by-person topic, the person-state changelog and the recommendations topic must have kafka.partitions "
        "partitions (a person's events, state and recommendations share one partition number):\n  "
        + "\n  ".join(lines)
        + "\nfix: "
        + "\n  ".join(fixes)
    )


async def check_compacted(admin: AIOKafkaAdminClient, topics: list[str], bootstrap: str) -> None:
    """Refuse topics that must be compacted but are not (created by hand, or by an older fusionrec).

    A cluster that does not let us read topic configs gets a warning: we cannot tell, and refusing
    would stop workers that are fine.
    """
    policies = await topic_config_values(admin, topics, "cleanup.policy")
    wrong = []
    for topic in topics:
        policy = policies.get(topic)
        if isinstance(policy, TopicError):
            log.warning(
                "cannot read cleanup.policy of topic %s (%s); it must be compacted (cleanup.policy=compact)", topic, policy
            )
        elif policy != "compact":
            wrong.append((topic, policy))
    if wrong:
        lines = [
            f"{topic} has cleanup.policy={policy}; fix: kafka-configs.sh --bootstrap-server {bootstrap} --alter "
            f"--entity-type topics --entity-name {topic} --add-config cleanup.policy=compact"
            for topic, policy in wrong
        ]
        raise TopicError(
            "topics that workers rebuild their state from must be compacted, or items, identity links and person "
            "state are lost after the retention period (a topic the broker auto-created because a client named it "
            "before the first worker started has the broker's default, delete):\n  " + "\n  ".join(lines)
        )


async def topic_config_values(admin: AIOKafkaAdminClient, topics: list[str], name: str) -> dict[str, str | TopicError]:
    """The value of one topic-level config of each topic (a TopicError where the broker refused to say)."""
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, t, {name: None}) for t in topics]
    responses = await admin.describe_configs(resources)
    out: dict[str, str | TopicError] = {}
    for response in responses:
        for code, message, _type, topic, entries in response.resources:
            if code:
                out[topic] = TopicError(f"{for_code(code).message}: {message}")
                continue
            out[topic] = next((entry[1] for entry in entries if entry[0] == name), "")
    return out

"""The topic list and its configs, and how CreateTopics' per-topic answers become one error."""

from __future__ import annotations

import pytest

from fusionrec.config import load_config
from fusionrec.errors import TopicError
from stream.topics import copartitioned_topics, person_state_changelog, raise_for_create_errors, topic_configs, topic_names

CFG = load_config(env={"FUSIONREC_PLATFORMS": "shop,video", "FUSIONREC_APP_ID": "recs", "FUSIONREC_TOPIC_PREFIX": "fr."})


def test_the_topics_workers_rebuild_state_from_are_compacted() -> None:
    configs = topic_configs(CFG)
    assert topic_names(CFG) == list(configs)
    compacted = {t for t, c in configs.items() if c.get("cleanup.policy") == "compact"}
    assert compacted == {"fr.items", "fr.identity", "recs-person-state-changelog"}
    assert set(topic_names(CFG)) - compacted == {"fr.events.shop", "fr.events.video", "fr.by-person", "fr.recs", "fr.dlq"}
    assert not any(c for t, c in configs.items() if t not in compacted)  # the rest: the cluster's defaults


def test_the_changelog_and_the_recommendations_are_co_partitioned_with_by_person() -> None:
    assert person_state_changelog(CFG) == "recs-person-state-changelog"  # faust: <app id>-<table>-changelog
    # a person's state and recommendations go to the partition number of their by-person partition
    assert copartitioned_topics(CFG) == ["fr.by-person", "recs-person-state-changelog", "fr.recs"]


def test_create_topic_errors_become_one_error_naming_topics_and_kafkas_answer() -> None:
    answer = [
        ("fr.items", 0, None),
        ("fr.recs", 36, "Topic 'fr.recs' already exists."),  # another worker won the race: fine
        ("fr.dlq", 38, "Replication factor: 3 larger than available brokers: 1."),
        ("fr.by-person", 38, "Replication factor: 3 larger than available brokers: 1."),
        ("fr.identity", 29),  # CreateTopics v0: no message
    ]
    with pytest.raises(TopicError) as info:
        raise_for_create_errors(answer)
    first, second = str(info.value).splitlines()[1:]
    assert first == "  fr.dlq, fr.by-person: INVALID_REPLICATION_FACTOR: Replication factor: 3 larger than available brokers: 1."
    assert second.startswith("  fr.identity: TOPIC_AUTHORIZATION_FAILED: ") and len(second) > 50  # Kafka's description
    raise_for_create_errors([("fr.items", 0, None), ("fr.recs", 36, "exists")])  # nothing to complain about


def test_a_partition_mismatch_names_every_topic_and_the_fixes() -> None:
    from fusionrec.errors import ConfigError
    from stream.topics import check_partitions

    topics = copartitioned_topics(CFG)
    check_partitions(dict.fromkeys(topics, 4), topics, 4, "b:9092")  # as configured: nothing to say
    with pytest.raises(ConfigError) as info:
        check_partitions({"fr.by-person": 4, "recs-person-state-changelog": 4, "fr.recs": 1}, topics, 4, "b:9092")
    message = str(info.value)
    assert "topic fr.recs has 1 partitions but kafka.partitions is 4" in message
    assert "fr.by-person has" not in message  # only the wrong one
    assert "kafka-topics.sh --bootstrap-server b:9092 --delete --topic fr.recs" in message
    assert "FUSIONREC_PARTITIONS=" not in message  # no single count would match all three
    with pytest.raises(ConfigError) as info:
        check_partitions(dict.fromkeys(topics, 2), topics, 4, "b:9092")
    assert "set FUSIONREC_PARTITIONS=2 to match" in str(info.value)
    assert all(f"topic {t} has 2 partitions" in str(info.value) for t in topics)

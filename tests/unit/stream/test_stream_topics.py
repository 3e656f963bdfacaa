"""How CreateTopics' per-topic answers become one error."""

from __future__ import annotations

import pytest

from fusionrec.errors import TopicError
from stream.topics import raise_for_create_errors

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

"""Topics on the real broker: creation errors are raised, the catalog topics and the person-state changelog
are compacted (and checked at start), tombstones delete items and links, and a worker started after
compaction has every live item and link.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import two_platforms as world
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fakes import build_core
from kafka_helpers import WorkerProcess, consume, consume_to_end, produce, run

from fusionrec.config import Config, load_config
from fusionrec.contracts import BehaviorEvent, DeadLetter, IdentityLink, ItemDelete, decode_recommendation, encode
from fusionrec.errors import TopicError
from stream.catalog import CatalogFollower
from stream.client import FusionrecProducer
from stream.topics import ensure_topics, person_state_changelog, topic_names, wait_for_topics


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


async def _cleanup_policies(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, str]:
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    out = {}
    for code, message, _type, topic, entries in response.resources:
        assert code == 0, message
        out[topic] = next(value for name, value, *_ in entries if name == "cleanup.policy")
    return out


def cleanup_policies(bootstrap: str, topics: list[str]) -> dict[str, str]:
    return run(with_admin(bootstrap, lambda admin: _cleanup_policies(admin, topics)))  # type: ignore[return-value]


def existing_topics(bootstrap: str) -> set[str]:
    return set(run(with_admin(bootstrap, lambda admin: admin.list_topics())))  # type: ignore[call-overload]


def set_topic_configs(bootstrap: str, topic: str, configs: Mapping[str, str]) -> None:
    """AlterConfigs replaces every dynamic config of the topic: ``configs`` must name them all.

    Returns once the broker describes the topic with them (KRaft: the controller answers the change
    before the broker's metadata cache has applied it).
    """

    async def alter(admin: AIOKafkaAdminClient) -> None:
        for response in await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, dict(configs))]):
            for code, message, *_ in response.resources:
                assert code == 0, message
        deadline = time.monotonic() + 30
        while True:
            (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, dict.fromkeys(configs))])
            (*_, entries), = response.resources
            current = {name: value for name, value, *_ in entries}
            if all(current.get(name) == value for name, value in configs.items()):
                return
            assert time.monotonic() < deadline, f"{topic}: configs {current} are not {dict(configs)} after 30 s"
            await asyncio.sleep(0.1)

    run(with_admin(bootstrap, alter))


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


# ----------------------------------------------------------------------------------------- compaction


def test_catalog_topics_and_the_changelog_are_created_compacted(bootstrap: str) -> None:
    cfg = config(bootstrap)
    run(ensure_topics(cfg))
    k = cfg.kafka
    compacted = {k.items_topic, k.identity_topic, person_state_changelog(cfg)}
    assert person_state_changelog(cfg) == f"{cfg.worker.app_id}-person-state-changelog"
    assert compacted <= set(topic_names(cfg))
    policies = cleanup_policies(bootstrap, topic_names(cfg))
    assert {t for t, p in policies.items() if p == "compact"} == compacted
    assert {p for t, p in policies.items() if t not in compacted} == {"delete"}  # events, by-person, recs, dlq

    async def partitions(admin: AIOKafkaAdminClient) -> dict[str, int]:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topic_names(cfg))}

    assert set(run(with_admin(bootstrap, partitions)).values()) == {k.partitions}  # type: ignore[union-attr]
    run(ensure_topics(cfg))  # a second worker starting finds them as they should be


def test_a_catalog_topic_that_is_not_compacted_is_refused(bootstrap: str) -> None:
    cfg = config(bootstrap)

    async def create_items_topic_by_hand(admin: AIOKafkaAdminClient) -> None:
        await admin.create_topics([NewTopic(cfg.kafka.items_topic, cfg.kafka.partitions, 1)])  # cleanup.policy=delete

    run(with_admin(bootstrap, create_items_topic_by_hand))
    with pytest.raises(TopicError) as info:
        run(ensure_topics(cfg))
    message = str(info.value)
    assert f"{cfg.kafka.items_topic} has cleanup.policy=delete" in message
    assert f"--entity-name {cfg.kafka.items_topic} --add-config cleanup.policy=compact" in message
    assert cfg.kafka.identity_topic not in message  # the ones it created itself are fine

    set_topic_configs(bootstrap, cfg.kafka.items_topic, {"cleanup.policy": "compact"})  # the documented fix
    run(ensure_topics(cfg))


# -------------------------------------------------------------------------------------------- tombstones


def test_the_catalog_follower_applies_tombstones(bootstrap: str) -> None:
    """Item and link tombstones (null values) from the producer client delete the item and the link."""
    cfg = config(bootstrap, FUSIONREC_PARTITIONS="2")
    run(ensure_topics(cfg))
    letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        letters.append(letter)

    async def until(what: str, check: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        async with FusionrecProducer(cfg) as producer:
            for item in world.items():
                await producer.send_item(item)
            # tombstones as they travel: the key names the item or the link, the value is null
            await producer.send_raw(cfg.kafka.items_topic, b"s-knife", None)
            await producer.send_item(ItemDelete("v-news", "video"))  # a JSON delete is still understood
            for link in world.links():
                await producer.send_link(link)
            await producer.send_link(IdentityLink("video", "u-alice", "alice-on-video"))  # same user id, other platform
            await producer.send_raw(cfg.kafka.identity_topic, b"shop:u-bob", None)
            await producer.send_raw(cfg.kafka.identity_topic, b"u-carol", None)  # keyed by user id alone: which link?
        rec = build_core(cfg=cfg, items=[])
        follower = CatalogFollower(cfg, rec, dead_letter)
        await follower.start()
        task = asyncio.create_task(follower.run())
        try:
            await asyncio.wait_for(follower.ready.wait(), 60)
            live = {i.item_id for i in world.items()} - {"s-knife", "v-news"}
            await until("the catalog", lambda: {i for i in live if i in rec.store} == live)
            assert "s-knife" not in rec.store and "v-news" not in rec.store and len(rec.store) == len(live)

            def person(platform: str, user: str) -> str:
                return rec.identity.person_of(BehaviorEvent("e", 0.0, platform, user, "i", "click"))

            assert person("shop", "u-alice") == "alice" and person("video", "watcher-7") == "alice"
            assert person("video", "u-alice") == "alice-on-video"
            assert person("shop", "u-bob") == "shop:u-bob"  # unlinked: their own person again
            assert [(d.reason, d.topic, d.payload) for d in letters] == [("bad_value", cfg.kafka.identity_topic, b"")]

            # tombstones from the client's own methods, arriving while the worker runs
            async with FusionrecProducer(cfg) as producer:
                await producer.send_item_tombstone("s-mouse")
                await producer.send_unlink("video", "watcher-7")
            assert await follower.sync(30)
            await until("the later tombstones", lambda: "s-mouse" not in rec.store and person("video", "watcher-7") != "alice")
            assert person("video", "watcher-7") == "video:watcher-7" and person("shop", "u-alice") == "alice"
            assert len(letters) == 1
        finally:
            task.cancel()
            await follower.stop()

    run(scenario())


# ---------------------------------------------------------------------------- a worker after compaction

FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": "100",  # a new segment as soon as a record arrives 100 ms after the last roll
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "100",  # tombstones go soon after their first cleaning
}
ROLL = "zz-roll"  # key of the records that roll the active segment (only closed segments are compacted)


def keys_of(bootstrap: str, topic: str) -> Counter[bytes]:
    return Counter(r.key for r in run(consume_to_end(bootstrap, topic)) if not r.key.endswith(ROLL.encode()))


@pytest.fixture()
def compacted_worker(bootstrap: str, artifacts_dir: Path) -> Iterator[tuple[WorkerProcess, int]]:
    """A worker started on catalog topics after compaction removed their overwritten and deleted records."""
    w = WorkerProcess(bootstrap, world.PLATFORMS, extra_env={"FUSIONREC_PARTITIONS": "1", "FUSIONREC_CATALOG_WAIT_S": "1"})
    cfg = w.config()
    run(ensure_topics(cfg))
    k = cfg.kafka
    for topic in (k.items_topic, k.identity_topic):
        set_topic_configs(bootstrap, topic, FAST_COMPACTION)
    items = world.items()
    gone = {"s-knife", "s-mouse", "v-news", "s-espresso", "v-esports"}

    async def publish() -> None:
        async with FusionrecProducer(cfg) as producer:
            for item in items:
                await producer.send_item(item)
            for item in items[:3]:  # overwritten: the first versions are compacted away
                await producer.send_item(replace(item, title=f"{item.title} (2nd edition)"))
            for item_id in ("s-knife", "s-mouse", "v-news"):
                await producer.send_item_tombstone(item_id)
            for item in items:
                if item.item_id in ("s-espresso", "v-esports"):
                    await producer.send_item(ItemDelete(item.item_id, item.platform))
            await producer.send_link(IdentityLink("shop", "u-alice", "alice-before"))
            await producer.send_link(IdentityLink("shop", "u-alice", "alice"))  # overwrites the one above
            await producer.send_link(IdentityLink("video", "u-alice", "alice-on-video"))  # same user id, other platform
            await producer.send_link(IdentityLink("video", "watcher-7", "alice"))
            await producer.send_link(IdentityLink("shop", "u-bob", "bob"))
            await producer.send_unlink("shop", "u-bob")

    async def roll() -> None:
        async with FusionrecProducer(cfg) as producer:
            await producer.send_item_tombstone(ROLL)
            await producer.send_unlink("shop", ROLL)

    run(publish())
    before = {t: keys_of(bootstrap, t) for t in (k.items_topic, k.identity_topic)}
    assert sum(before[k.items_topic].values()) == len(items) + 3 + 3 + 2
    assert sum(before[k.identity_topic].values()) == 6
    # wait for the log cleaner: every key once at most (the overwritten and deleted records are gone)
    deadline = time.monotonic() + 180
    while True:
        run(roll())
        after = {t: keys_of(bootstrap, t) for t in before}
        if all(max(c.values(), default=0) <= 1 for c in after.values()):
            break
        assert time.monotonic() < deadline, f"not compacted after 180 s: {after}"
        time.sleep(1)
    assert sum(after[k.items_topic].values()) < sum(before[k.items_topic].values())
    assert {key.decode() for key in after[k.items_topic]} >= {i.item_id for i in items} - gone

    w.start(artifacts_dir)
    try:
        live = len(items) - len(gone)
        w.wait_ready(items=live)
        yield w, live
    finally:
        w.stop()


def test_a_worker_started_after_compaction_has_every_live_item_and_link(
    compacted_worker: tuple[WorkerProcess, int], bootstrap: str
) -> None:
    worker, live = compacted_worker
    assert worker.health()["items"] == live
    cfg = worker.config()
    now = time.time() - 60
    events = [
        BehaviorEvent("c1", now, "shop", "u-alice", "s-run-shoes", "click"),
        BehaviorEvent("c2", now + 1, "video", "u-alice", "v-yoga-class", "click"),
        BehaviorEvent("c3", now + 2, "video", "watcher-7", "v-marathon-doc", "click"),
        BehaviorEvent("c4", now + 3, "shop", "u-bob", "s-yoga-mat", "click"),
        BehaviorEvent("c5", now + 4, "shop", "u-carol", "s-knife", "click"),  # deleted by a tombstone
        BehaviorEvent("c6", now + 5, "video", "u-dave", "v-news", "click"),  # deleted by an op=delete message
    ]
    run(produce(bootstrap, [(cfg.kafka.events_topic(e.platform), e.user_id.encode(), encode(e)) for e in events]))
    recs = [decode_recommendation(r.value) for r in run(consume(bootstrap, cfg.kafka.recs_topic, expect=4))]
    assert {r.event_id: r.person_id for r in recs} == {
        "c1": "alice",  # the later of two links of shop:u-alice
        "c2": "alice-on-video",  # the link of the same user id on the other platform survived compaction
        "c3": "alice",
        "c4": "shop:u-bob",  # unlinked by a tombstone
    }, worker.log_tail()
    letters = [orjson.loads(r.value) for r in run(consume(bootstrap, cfg.kafka.dlq_topic, expect=2))]
    assert sorted((l["reason"], orjson.loads(base64.b64decode(l["payload_b64"]))["event_id"]) for l in letters) == [
        ("unknown_item", "c5"),
        ("unknown_item", "c6"),
    ]


"""Starting on the real broker: a worker started before any of its topics exist, its HTTP endpoints'
bind address, a ~900 KB message among valid events, and topics a client auto-created before the first
worker (events topics are used; a catalog topic that is not compacted and a co-partitioned topic with
the wrong partition count are refused, with the fix, before anything is created).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import two_platforms as world
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import WorkerProcess, consume, produce, run
from listening import listeners, socket_inodes
from recovery_helpers import answered_event_ids, wait_for

from fusionrec.config import Config
from fusionrec.contracts import DEAD_LETTER_MAX_BYTES, BehaviorEvent, decode_recommendation, encode, identity_key
from fusionrec.errors import ConfigError
from stream.tail import follow
from stream.topics import copartitioned_topics, ensure_topics, person_state_changelog, topic_names

POISON_BYTES = 900 * 1024
"""A message near Kafka's default 1 MiB limit: far above ``limits.max_message_bytes`` (64 KiB)."""


async def _describe(bootstrap: str, topics: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Partition count and cleanup.policy of each topic that exists (never auto-creates one)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [t for t in topics if t in existing]
        if not names:
            return {}, {}
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in names])
        policies = {
            topic: next(value for name, value, *_ in entries if name == "cleanup.policy")
            for _code, _msg, _type, topic, entries in response.resources
        }
        return partitions, policies
    finally:
        await admin.close()


def describe(bootstrap: str, topics: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    return run(_describe(bootstrap, topics))  # type: ignore[no-any-return]


def big_event(n: int, now: float) -> bytes:
    """A well-formed event whose context note makes it ~900 KB (valid JSON, just too large)."""
    base = {"v": 1, "event_id": f"huge-{n}", "ts": now, "platform": "shop", "user_id": "u-dana", "item_id": "s-knife", "event_type": "click"}
    pad = POISON_BYTES - len(orjson.dumps({**base, "context": {"note": ""}}))
    return orjson.dumps({**base, "context": {"note": "x" * pad}})


def assert_bounded_too_large_letter(letter_bytes: bytes, payload: bytes, topic: str) -> None:
    letter = orjson.loads(letter_bytes)
    assert letter["reason"] == "too_large" and letter["topic"] == topic
    assert letter["payload_size"] == len(payload)
    assert letter["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert letter["payload_truncated"] is True and "payload_b64" not in letter
    assert payload.startswith(base64.b64decode(letter["payload_prefix_b64"]))
    assert len(letter_bytes) < DEAD_LETTER_MAX_BYTES, f"a dead letter of {len(letter_bytes)} bytes"


# ------------------------------------------------------------------------ a worker started before its topics


@pytest.fixture(scope="module")
def first_worker(bootstrap: str, artifacts_dir: Path) -> Iterator[WorkerProcess]:
    """A worker started on a fresh topic prefix: not one of its topics exists yet."""
    w = WorkerProcess(bootstrap, world.PLATFORMS, extra_env={"FUSIONREC_PARTITIONS": "3", "FUSIONREC_CATALOG_WAIT_S": "5"})
    cfg = w.config()
    assert describe(bootstrap, topic_names(cfg)) == ({}, {}), "the prefix must be fresh"
    w.start(artifacts_dir)
    try:
        status = w.wait_http_ready()
        assert status["catalog_ready"] and status["items"] == 0  # nothing published yet
        yield w
    finally:
        w.stop()


def test_a_worker_started_first_creates_its_topics_as_configured(first_worker: WorkerProcess, bootstrap: str) -> None:
    cfg = first_worker.config()
    partitions, policies = describe(bootstrap, topic_names(cfg))
    assert set(partitions) == set(topic_names(cfg)), "every topic exists once the worker is ready"
    assert set(partitions.values()) == {3}, partitions  # FUSIONREC_PARTITIONS, not the broker's num.partitions
    k = cfg.kafka
    compacted = {k.items_topic, k.identity_topic, person_state_changelog(cfg)}
    assert {t for t, p in policies.items() if p == "compact"} == compacted, policies
    # and the hot path is subscribed to the events topics it created
    _, body = first_worker.ready()
    assigned = {p.rsplit(":", 1)[0] for p in body["partitions"]}  # type: ignore[union-attr]
    assert {k.events_topic(p) for p in cfg.platforms} | {k.by_person_topic} == assigned


def test_a_worker_started_first_answers_every_event_around_a_900_kb_message(first_worker: WorkerProcess, bootstrap: str) -> None:
    """Items, links and events for two platforms published after the worker started; a ~900 KB message in
    the middle of the events is dead-lettered as too_large with a bounded letter; the worker stays up."""
    cfg = first_worker.config()
    k = cfg.kafka
    links = [(k.identity_topic, identity_key(link.platform, link.user_id), encode(link)) for link in world.links()]
    items = [(k.items_topic, i.item_id.encode(), encode(i)) for i in world.items()]
    run(produce(bootstrap, links + items))
    wait_for(lambda: first_worker.health().get("items") == len(world.items()), 120, "the catalog")

    events = world.events(t0=time.time() - 3600)
    poison = big_event(1, time.time() - 60)
    messages = [(k.events_topic(e.platform), e.user_id.encode(), encode(e)) for e in events]
    messages.insert(len(messages) // 2, (k.events_topic("shop"), b"u-dana", poison))
    run(produce(bootstrap, messages))

    ids = answered_event_ids(cfg, bootstrap, until={e.event_id for e in events}, timeout_s=120)
    assert {e.event_id for e in events} <= set(ids), f"unanswered: {sorted({e.event_id for e in events} - set(ids))}\n{first_worker.log_tail()}"
    recs = [decode_recommendation(r.value) for r in run(consume(bootstrap, k.recs_topic, expect=len(events), timeout_s=30))]
    assert {r.event_id: r.person_id for r in recs} == {
        "e1": "alice", "e2": "bob", "e3": "alice", "e4": "alice", "e5": "carol",
        "e6": "bob", "e7": "alice", "e8": "video:anon-9", "e9": "carol", "e10": "alice",
    }  # fmt: skip  # the identity links the worker's own identity topic carried

    (letter,) = run(consume(bootstrap, k.dlq_topic, expect=1, timeout_s=60))
    assert_bounded_too_large_letter(letter.value, poison, k.events_topic("shop"))
    assert first_worker.proc is not None and first_worker.proc.poll() is None, "the worker must stay up"
    assert first_worker.ready()[0] == 200


def test_the_web_endpoints_listen_on_loopback_only(first_worker: WorkerProcess) -> None:
    """FUSIONREC_WEB_HOST defaults to 127.0.0.1, and that is the address the socket is bound to."""
    assert first_worker.proc is not None
    found = listeners(first_worker.port)
    assert found, f"nothing listens on port {first_worker.port}"
    mine = socket_inodes(first_worker.proc.pid)
    assert all(s.inode in mine for s in found), "the listening socket is the worker's"
    assert {s.address for s in found} == {"127.0.0.1"}, found  # not 0.0.0.0, not ::


# --------------------------------------------------------------------- topics auto-created by another client


def _autocreated(bootstrap: str, topic: str) -> int:
    partitions, _ = describe(bootstrap, [topic])
    if topic not in partitions:
        pytest.skip("this broker does not auto-create topics (auto.create.topics.enable=false)")
    return partitions[topic]


def test_event_topics_auto_created_by_a_producer_before_the_first_worker_are_used(bootstrap: str, artifacts_dir: Path) -> None:
    """A platform publishes before fusionrec is deployed: the broker auto-creates its events topic (the
    broker's num.partitions, not compacted). The events topics need neither, so the worker uses them."""
    w = WorkerProcess(bootstrap, world.PLATFORMS, extra_env={"FUSIONREC_CATALOG_WAIT_S": "5"})
    k = w.config().kafka
    early = [BehaviorEvent(f"early-{p}", time.time() - 7200, p, "early-bird", "ghost-item", "view") for p in world.PLATFORMS]
    run(produce(bootstrap, [(k.events_topic(e.platform), e.user_id.encode(), encode(e)) for e in early]))
    auto = _autocreated(bootstrap, k.events_topic("shop"))
    w = WorkerProcess(bootstrap, world.PLATFORMS, run_id=w.run_id, extra_env={**w.extra_env, "FUSIONREC_PARTITIONS": str(auto + 1)})
    cfg = w.config()
    w.start(artifacts_dir)
    try:
        w.wait_http_ready()
        partitions, _ = describe(bootstrap, topic_names(cfg))
        assert partitions[k.events_topic("shop")] == auto and partitions[k.by_person_topic] == auto + 1
        run(produce(bootstrap, [(k.items_topic, i.item_id.encode(), encode(i)) for i in world.items()]))
        wait_for(lambda: w.health().get("items") == len(world.items()), 120, "the catalog")
        events = world.events(t0=time.time() - 3600)
        run(produce(bootstrap, [(k.events_topic(e.platform), e.user_id.encode(), encode(e)) for e in events]))
        ids = answered_event_ids(cfg, bootstrap, until={e.event_id for e in events}, timeout_s=120)
        assert {e.event_id for e in events} <= set(ids), w.log_tail()
        # the early events name an item that never existed: read, and dead-lettered as such
        letters = [orjson.loads(r.value) for r in run(consume(bootstrap, k.dlq_topic, expect=len(early), timeout_s=60))]
        assert sorted((d["reason"], d["topic"]) for d in letters) == sorted(("unknown_item", k.events_topic(p)) for p in world.PLATFORMS)
    finally:
        w.stop()


def test_a_catalog_topic_auto_created_by_a_producer_is_refused_with_the_fix(bootstrap: str, artifacts_dir: Path) -> None:
    """Items published before the first worker: the broker auto-creates the items topic with
    cleanup.policy=delete. The worker refuses to start on it, naming the command that fixes it; after
    that command (run as printed, with Kafka's own ConfigCommand) the topics pass the check."""
    w = WorkerProcess(bootstrap, world.PLATFORMS)
    cfg = w.config()
    k = cfg.kafka
    run(produce(bootstrap, [(k.items_topic, i.item_id.encode(), encode(i)) for i in world.items()]))
    _autocreated(bootstrap, k.items_topic)
    w = WorkerProcess(bootstrap, world.PLATFORMS, run_id=w.run_id, extra_env={"FUSIONREC_PARTITIONS": str(describe(bootstrap, [k.items_topic])[0][k.items_topic])})
    w.start(artifacts_dir)
    try:
        assert w.proc is not None
        rc = w.proc.wait(timeout=240)
    finally:
        w.stop()
    log = w.log_tail(200)
    assert rc != 0, f"the worker must not run on a catalog topic that is not compacted:\n{log}"
    assert f"{k.items_topic} has cleanup.policy=delete" in log, log
    assert set(describe(bootstrap, topic_names(cfg))[0]) == {k.items_topic}, "refused before creating anything"
    fix = next(line for line in log.splitlines() if "kafka-configs.sh" in line and k.items_topic in line)
    command = fix[fix.index("kafka-configs.sh") :].split()
    assert command[-2:] == ["--add-config", "cleanup.policy=compact"], command
    kafka_configs(command[1:])
    wait_for(lambda: describe(bootstrap, [k.items_topic])[1].get(k.items_topic) == "compact", 30, "the new cleanup.policy")
    run(ensure_topics(w.config()))  # what the worker runs at start: accepted now


def kafka_configs(args: list[str]) -> None:
    """``kafka-configs.sh ARGS`` is ``kafka-run-class.sh kafka.admin.ConfigCommand ARGS``: the same class,
    from the jars the local broker runs."""
    import subprocess

    from stream.kafka_local.broker import fetch_jars

    done = subprocess.run(["java", "-Xmx256m", "-cp", f"{fetch_jars()}/*", "kafka.admin.ConfigCommand", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_copartitioned_topic_auto_created_with_other_partitions_is_refused_before_anything_is_created(bootstrap: str) -> None:
    """``fusionrec tail`` run before the first worker: its consumer's metadata request auto-creates the
    recommendations topic with the broker's num.partitions. A worker configured for another count must
    refuse, say which counts and how to fix it, and create nothing meanwhile: the topics it would have
    created with its count would make the advice (set FUSIONREC_PARTITIONS to match) impossible."""
    probe = WorkerProcess(bootstrap, world.PLATFORMS)

    async def tail_briefly(cfg: Config) -> None:
        async for _ in follow(cfg, idle_timeout_s=1.0):
            pass

    run(tail_briefly(probe.config()))
    recs = probe.config().kafka.recs_topic
    auto = _autocreated(bootstrap, recs)
    wrong = WorkerProcess(bootstrap, world.PLATFORMS, run_id=probe.run_id, extra_env={"FUSIONREC_PARTITIONS": str(auto + 2)})
    cfg = wrong.config()
    with pytest.raises(ConfigError) as info:
        run(ensure_topics(cfg))
    message = str(info.value)
    assert f"{recs} has {auto} partitions" in message and f"kafka.partitions is {auto + 2}" in message, message
    assert f"FUSIONREC_PARTITIONS={auto}" in message and "--delete --topic" in message, message
    assert set(describe(bootstrap, topic_names(cfg))[0]) == {recs}, "nothing may be created before the check"

    # the advice works: the configured count matches the topic's
    right = WorkerProcess(bootstrap, world.PLATFORMS, run_id=probe.run_id, extra_env={"FUSIONREC_PARTITIONS": str(auto)})
    run(ensure_topics(right.config()))
    partitions, _ = describe(bootstrap, topic_names(cfg))
    assert {partitions[t] for t in copartitioned_topics(cfg)} == {auto}


def test_a_copartitioned_topic_with_other_partitions_among_others_still_names_each(bootstrap: str) -> None:
    """Two workers of one group configured differently: the second is refused on every co-partitioned topic."""
    probe = WorkerProcess(bootstrap, world.PLATFORMS, extra_env={"FUSIONREC_PARTITIONS": "2"})
    run(ensure_topics(probe.config()))
    other = WorkerProcess(bootstrap, world.PLATFORMS, run_id=probe.run_id, extra_env={"FUSIONREC_PARTITIONS": "5"})
    with pytest.raises(ConfigError) as info:
        run(ensure_topics(other.config()))
    for topic in copartitioned_topics(other.config()):
        assert f"{topic} has 2 partitions" in str(info.value)


"""Acceptance with a client fusionrec did not write: kcat (librdkafka) publishes the items, identity links
and events of two platforms, with a ~900 KB message in the middle of the events, and reads the
recommendations and dead letters back.  Every valid event is answered, the big message is
dead-lettered as ``too_large`` in a bounded letter, and the worker stays up.

Skipped only on a developer machine without kcat; with CI set, a missing kcat fails
(``scripts/install-test-deps.sh`` installs Debian's ``kcat``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import two_platforms as world
from kafka_helpers import WorkerProcess
from test_startup_kafka import assert_bounded_too_large_letter, big_event

from fusionrec.contracts import encode, identity_key

TIMEOUT_S = 120


def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("kcat is missing: run scripts/install-test-deps.sh (Debian package kcat)")
        pytest.skip("kcat is missing (scripts/install-test-deps.sh installs it)")
    return path


def kcat_produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """``kcat -P``: one message per line, key and value split at the first tab; acks from every in-sync
    replica; kcat exits non-zero when a message was not delivered."""
    lines = b"".join(key + b"\t" + value + b"\n" for key, value in messages)
    assert all(b"\n" not in v and b"\t" not in k for k, v in messages)
    done = subprocess.run(
        [kcat(), "-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-X", "acks=all", "-X", "message.max.bytes=1000000"],
        input=lines, capture_output=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr.decode(errors="replace")


def kcat_read(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """``kcat -C -e``: every message of ``topic`` from the beginning to its current end, as (size, value)."""
    done = subprocess.run(
        [kcat(), "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%S\t%s\n",
         "-X", "fetch.message.max.bytes=2000000"],
        capture_output=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = []
    for line in done.stdout.splitlines():
        size, _, value = line.partition(b"\t")
        out.append((int(size), value))
    return out


def read_until(bootstrap: str, topic: str, done: object, what: str) -> list[tuple[int, bytes]]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        got = kcat_read(bootstrap, topic)
        if done(got):  # type: ignore[operator]
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}; read {len(got)} messages"
        time.sleep(1)


@pytest.fixture()
def worker(bootstrap: str, artifacts_dir: Path) -> Iterator[WorkerProcess]:
    kcat()  # skip (or fail in CI) before starting anything
    w = WorkerProcess(bootstrap, world.PLATFORMS, extra_env={"FUSIONREC_PARTITIONS": "3", "FUSIONREC_CATALOG_WAIT_S": "5"})
    w.start(artifacts_dir)
    try:
        w.wait_http_ready()  # the worker created its topics
        yield w
    finally:
        w.stop()


def test_kcat_publishes_two_platforms_and_a_900_kb_message(worker: WorkerProcess, bootstrap: str) -> None:
    k = worker.config().kafka
    kcat_produce(bootstrap, k.identity_topic, [(identity_key(link.platform, link.user_id), encode(link)) for link in world.links()])
    kcat_produce(bootstrap, k.items_topic, [(i.item_id.encode(), encode(i)) for i in world.items()])
    deadline = time.monotonic() + TIMEOUT_S
    while worker.health().get("items") != len(world.items()):
        assert time.monotonic() < deadline, f"catalog not loaded:\n{worker.log_tail()}"
        time.sleep(0.5)

    events = world.events(t0=time.time() - 3600)
    poison = big_event(2, time.time() - 60)
    shop = [(e.user_id.encode(), encode(e)) for e in events if e.platform == "shop"]
    shop.insert(len(shop) // 2, (b"u-dana", poison))
    kcat_produce(bootstrap, k.events_topic("shop"), shop)
    kcat_produce(bootstrap, k.events_topic("video"), [(e.user_id.encode(), encode(e)) for e in events if e.platform == "video"])

    want = {e.event_id for e in events}
    recs = read_until(bootstrap, k.recs_topic, lambda got: want <= {orjson.loads(v)["event_id"] for _, v in got}, "every event's recommendation")
    persons = {(m := orjson.loads(v))["event_id"]: m["person_id"] for _, v in recs}
    assert persons == {
        "e1": "alice", "e2": "bob", "e3": "alice", "e4": "alice", "e5": "carol",
        "e6": "bob", "e7": "alice", "e8": "video:anon-9", "e9": "carol", "e10": "alice",
    }, worker.log_tail()  # fmt: skip
    assert all(orjson.loads(v)["items"] for _, v in recs)  # 12 items a platform: fewer than K once some are consumed

    ((size, letter),) = read_until(bootstrap, k.dlq_topic, lambda got: len(got) >= 1, "the dead letter")
    assert size == len(letter)
    assert_bounded_too_large_letter(letter, poison, k.events_topic("shop"))
    assert worker.proc is not None and worker.proc.poll() is None, "the worker must stay up"
    assert worker.ready()[0] == 200

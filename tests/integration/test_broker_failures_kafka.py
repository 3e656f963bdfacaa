"""Broker failures mid-stream: a restarted single broker, and, in a three-broker cluster, the loss of the
broker that leads a partition the events use, or of the active controller.

Each test runs its own cluster (the session broker stays untouched), a real worker process and a
producer that keeps publishing through the failure; afterwards every event has a recommendation and
the per-person state equals an uninterrupted in-process run of the same events.  The broker to kill is
asked of the cluster at the moment of the failure (``cluster_roles``), never a fixed node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cluster_roles import partition_leaders, quorum_leader
from kafka_helpers import WorkerProcess, run
from recovery_helpers import (
    SteadyProducer,
    answered_event_ids,
    assert_same_states,
    final_states,
    interleave_people,
    movielens_slice,
    publish_catalog,
    reference_states,
    wait_for,
)

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent
from stream.compose import build_recommender
from stream.kafka_local.broker import LocalCluster, Node, free_port
from stream.partitions import person_partition
from stream.topics import ensure_topics

N_EVENTS = 2000


def _run_through_failure(
    cluster: LocalCluster, artifacts_dir: Path, fail: Callable[[Config, list[BehaviorEvent]], None], extra_env: dict[str, str]
) -> None:
    bootstrap = cluster.start()
    items, events = movielens_slice(N_EVENTS)
    events = interleave_people(events)  # every person, so every partition, busy throughout
    worker = WorkerProcess(bootstrap, ("movies",), extra_env={"FUSIONREC_PARTITIONS": "3", **extra_env})
    cfg = worker.config()
    run(ensure_topics(cfg))
    publish_catalog(cfg, bootstrap, items)
    worker.start(artifacts_dir)
    try:
        worker.wait_ready(items=len(items))
        producer = SteadyProducer(cfg, bootstrap, events, rate=200)
        producer.start()
        wait_for(lambda: producer.sent >= N_EVENTS // 3, 60, "a third of the events to be sent")
        t0 = time.monotonic()
        fail(cfg, events)
        print(f"\nfailure handled by the cluster in {time.monotonic() - t0:.1f}s; producer at {producer.sent}/{N_EVENTS}")
        producer.join(timeout=300)
        assert producer.error is None, repr(producer.error)
        assert not producer.is_alive()
        ids = answered_event_ids(cfg, bootstrap, until={e.event_id for e in events}, timeout_s=240)
        missing = {e.event_id for e in events} - set(ids)
        assert not missing, f"{len(missing)} events never got a recommendation:\n{worker.log_tail()}"
        assert worker.proc is not None and worker.proc.poll() is None, "the worker must survive the failure"
    finally:
        worker.stop()
    reference = build_recommender(cfg)
    reference.apply_items(items)
    assert_same_states(final_states(cfg, bootstrap), reference_states(reference, events))


def test_broker_restart_mid_stream(tmp_path: Path, artifacts_dir: Path) -> None:
    cluster = LocalCluster(tmp_path / "kafka", port=free_port())

    def restart(cfg: Config, events: list[BehaviorEvent]) -> None:
        cluster.stop()  # a clean broker restart, as in a rolling upgrade
        time.sleep(3)
        cluster.start()

    try:
        _run_through_failure(cluster, artifacts_dir, restart, {})
    finally:
        cluster.destroy()


def _node(cluster: LocalCluster, node_id: int) -> Node:
    return next(n for n in cluster.nodes if n.node_id == node_id)


def test_three_brokers_lose_the_leader_of_an_events_partition_mid_stream(tmp_path: Path, artifacts_dir: Path) -> None:
    cluster = LocalCluster(tmp_path / "kafka3", size=3)

    def kill_the_leader(cfg: Config, events: list[BehaviorEvent]) -> None:
        topic = cfg.kafka.events_topic("movies")
        partition = person_partition(events[-1].user_id, cfg.kafka.partitions)  # the producer's partitioner: still to come
        leader = run(partition_leaders(cluster.bootstrap, topic))[partition]
        assert leader in {n.node_id for n in cluster.running()}, leader
        print(f"\nkilling node {leader}, leader of {topic}[{partition}] (active controller: node {run(quorum_leader(cluster.bootstrap))})")
        cluster.stop_node(_node(cluster, leader), kill=True)  # SIGKILL: no clean shutdown
        wait_for(lambda: run(partition_leaders(cluster.bootstrap, topic))[partition] not in (leader, -1), 60, f"a new leader of {topic}[{partition}]")

    try:
        _run_through_failure(cluster, artifacts_dir, kill_the_leader, {"FUSIONREC_REPLICATION_FACTOR": "3"})
    finally:
        cluster.destroy()


def test_three_brokers_lose_the_active_controller_mid_stream(tmp_path: Path, artifacts_dir: Path) -> None:
    cluster = LocalCluster(tmp_path / "kafka3c", size=3)

    def kill_the_controller(cfg: Config, events: list[BehaviorEvent]) -> None:
        controller = run(quorum_leader(cluster.bootstrap))
        print(f"\nkilling node {controller}, the active controller (leader of the metadata quorum)")
        cluster.stop_node(_node(cluster, controller), kill=True)
        wait_for(lambda: run(quorum_leader(cluster.bootstrap)) not in (controller, -1), 60, "a new active controller")

    try:
        _run_through_failure(cluster, artifacts_dir, kill_the_controller, {"FUSIONREC_REPLICATION_FACTOR": "3"})
    finally:
        cluster.destroy()

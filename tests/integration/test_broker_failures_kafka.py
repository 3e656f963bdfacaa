"""Broker failures mid-stream: a restarted single broker, and a lost broker of a three-broker cluster.

Each test runs its own cluster (the session broker stays untouched), a real worker process and a
producer that keeps publishing through the failure; afterwards every event has a recommendation and
the per-person state equals an uninterrupted in-process run of the same events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kafka_helpers import WorkerProcess, run
from recovery_helpers import (
    SteadyProducer,
    answered_event_ids,
    assert_same_states,
    final_states,
    movielens_slice,
    publish_catalog,
    reference_states,
    wait_for,
)

from stream.compose import build_recommender
from stream.kafka_local.broker import LocalCluster, free_port
from stream.topics import ensure_topics

N_EVENTS = 2000


def _run_through_failure(
    cluster: LocalCluster, artifacts_dir: Path, fail: Callable[[], None], extra_env: dict[str, str]
) -> None:
    bootstrap = cluster.start()
    items, events = movielens_slice(N_EVENTS)
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
        fail()
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

    def restart() -> None:
        cluster.stop()  # a clean broker restart, as in a rolling upgrade
        time.sleep(3)
        cluster.start()

    try:
        _run_through_failure(cluster, artifacts_dir, restart, {})
    finally:
        cluster.destroy()


def test_three_brokers_lose_one_mid_stream(tmp_path: Path, artifacts_dir: Path) -> None:
    cluster = LocalCluster(tmp_path / "kafka3", size=3)

    def kill_one() -> None:
        cluster.stop_node(cluster.nodes[1], kill=True)  # SIGKILL: no clean shutdown

    try:
        _run_through_failure(cluster, artifacts_dir, kill_one, {"FUSIONREC_REPLICATION_FACTOR": "3"})
    finally:
        cluster.destroy()

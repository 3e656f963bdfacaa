"""Nothing lost, nothing applied twice: SIGKILL a worker mid-stream and restart it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from kafka_helpers import WorkerProcess, consume_to_end, run
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

from fusionrec.contracts import decode_recommendation
from stream.compose import build_recommender
from stream.topics import ensure_topics

N_EVENTS = 3000
RATE = 300.0
"""Events per second published: the worker is killed about two seconds in, the stream runs ten."""


def _recs_total(worker: WorkerProcess) -> float:
    try:
        lines = [ln for ln in worker.metrics().splitlines() if ln.startswith("fusionrec_recommendations_total{")]
    except OSError:
        return 0.0
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(bootstrap: str, artifacts_dir: Path) -> None:
    items, events = movielens_slice(N_EVENTS)
    env = {"FUSIONREC_CHECKPOINT_EVERY_EVENTS": "500", "FUSIONREC_PARTITIONS": "4"}
    worker = WorkerProcess(bootstrap, ("movies",), extra_env=env)
    cfg = worker.config()
    run(ensure_topics(cfg))
    publish_catalog(cfg, bootstrap, items)

    worker.start(artifacts_dir)
    try:
        worker.wait_ready(items=len(items))
        # a steady stream, so that the kill lands mid-stream however fast the worker is
        producer = SteadyProducer(cfg, bootstrap, events, rate=RATE)
        producer.start()
        wait_for(lambda: _recs_total(worker) >= N_EVENTS // 5, 120, "the first recommendations")
        assert worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGKILL)
        killed_ms = time.time() * 1000
        worker.proc.wait()
        answered_before = len(run(consume_to_end(bootstrap, cfg.kafka.recs_topic)))
        assert 0 < answered_before < N_EVENTS, "the kill must land mid-stream"
        assert producer.is_alive(), "the stream must go on while the worker is down"

        worker.start(artifacts_dir)
        worker.wait_ready(items=len(items))
        producer.join(timeout=300)
        assert producer.error is None, repr(producer.error)

        ids = answered_event_ids(cfg, bootstrap, until={e.event_id for e in events}, timeout_s=240)
        missing = {e.event_id for e in events} - set(ids)
        assert not missing, f"{len(missing)} events never got a recommendation: {sorted(missing)[:5]}\n{worker.log_tail()}"

        records = run(consume_to_end(bootstrap, cfg.kafka.recs_topic))
        after = [decode_recommendation(r.value).produced_at_ms for r in records]
        first_new = min(ms for ms in after if ms > killed_ms)
        print(f"\nrecovery: kill -> first new recommendation {first_new - killed_ms:.0f} ms "
              f"({answered_before} of {N_EVENTS} answered before the kill, {len(ids) - N_EVENTS} answered twice)")
    finally:
        worker.stop()

    reference = build_recommender(cfg)
    reference.apply_items(items)
    assert_same_states(final_states(cfg, bootstrap), reference_states(reference, events))

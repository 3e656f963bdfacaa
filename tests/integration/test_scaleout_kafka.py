"""Scale-out and failover on the real broker: three workers in one group share the partitions; one is
SIGKILLed mid-stream while a producer keeps publishing; its partitions move to the two survivors, every
event is answered, and every person's final state equals an uninterrupted in-process run.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

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

from stream.compose import build_recommender
from stream.topics import ensure_topics

N_EVENTS = 2000
RATE = 100.0
"""Events per second: a 20 s stream; the kill lands a few seconds in, the group rebalances within it."""
PARTITIONS = 6


def _recs_total(workers: list[WorkerProcess]) -> float:
    total = 0.0
    for w in workers:
        try:
            text = w.metrics()
        except OSError:
            continue
        total += sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("fusionrec_recommendations_total{"))
    return total


def _partitions(w: WorkerProcess) -> set[str]:
    status, body = w.ready()
    return set(body.get("partitions", ())) if status == 200 else set()  # type: ignore[call-overload]


def test_three_workers_one_sigkilled_mid_stream(bootstrap: str, artifacts_dir: Path) -> None:
    items, events = movielens_slice(N_EVENTS)
    events = interleave_people(events)  # every person, so every partition, busy throughout
    group = f"t{uuid.uuid4().hex[:10]}"
    workers = [
        WorkerProcess(
            bootstrap,
            ("movies",),
            extra_env={
                "FUSIONREC_TOPIC_PREFIX": f"{group}.",  # one group, one set of topics...
                "FUSIONREC_APP_ID": group,
                "FUSIONREC_PARTITIONS": str(PARTITIONS),
                "FUSIONREC_CHECKPOINT_EVERY_EVENTS": "500",
            },  # ...and a data dir of its own each (the WorkerProcess's run id)
        )
        for _ in range(3)
    ]
    cfg = workers[0].config()
    k = cfg.kafka
    every = {f"{t}:{p}" for t in (k.events_topic("movies"), k.by_person_topic) for p in range(PARTITIONS)}
    run(ensure_topics(cfg))
    publish_catalog(cfg, bootstrap, items)

    for w in workers:
        w.start(artifacts_dir)
    try:
        for w in workers:
            w.wait_http_ready()  # catalog loaded, partitions assigned

        def spread() -> bool:  # the group settled: every partition on exactly one of the three
            owned = [_partitions(w) for w in workers]
            return all(owned) and set().union(*owned) == every and sum(map(len, owned)) == len(every)

        wait_for(spread, 120, "the partitions spread over three workers")
        victim, survivors = workers[1], [workers[0], workers[2]]
        lost = _partitions(victim)
        assert any(p.startswith(k.by_person_topic) for p in lost), lost  # it holds person state

        producer = SteadyProducer(cfg, bootstrap, events, rate=RATE)
        producer.start()
        wait_for(lambda: _recs_total(workers) >= N_EVENTS // 5, 120, "the first recommendations")
        assert victim.proc is not None
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        assert producer.is_alive(), "the kill must land mid-stream"

        def moved() -> bool:  # after the session timeout, the survivors hold every partition
            owned = [_partitions(w) for w in survivors]
            return set().union(*owned) == every and sum(map(len, owned)) == len(every)

        wait_for(moved, 120, "the victim's partitions to move to the survivors")
        producer.join(timeout=300)
        assert producer.error is None, repr(producer.error)
        assert not producer.is_alive()

        want = {e.event_id for e in events}
        ids = answered_event_ids(cfg, bootstrap, until=want, timeout_s=240)
        missing = want - set(ids)
        assert not missing, f"{len(missing)} events never got a recommendation: {sorted(missing)[:5]}\n" + "\n".join(w.log_tail(20) for w in survivors)
        assert all(w.proc is not None and w.proc.poll() is None for w in survivors), "the survivors must stay up"
        print(f"\nscale-out: {len(lost)} partitions moved from the killed worker; {len(ids) - N_EVENTS} events answered twice")
    finally:
        for w in workers:
            w.stop()

    reference = build_recommender(cfg)
    reference.apply_items(items)
    assert_same_states(final_states(cfg, bootstrap), reference_states(reference, events))

"""A worker serving a learned sequence model on the real broker: taking a newer file without a restart,
and fine-tuning the network itself.

The worker starts with ``model.sequence_model`` pointing at a file (version 1) and answers MovieLens
events with the network's ``seq`` feature computed for every request; the file is then replaced by
``SequenceModel.save`` (a rename, as ``train-sequence --out`` does) with version 2, and the worker must
serve version 2 within seconds (``/health``) and keep answering every event.  With
``model.sequence_finetune_every_s`` the worker trains the untrained network it starts from on the
journeys it sees (people walking a cycle of films), serves, writes and checkpoints version 2, and
serves it again after a restart although the file holds version 1 (older than the checkpoint).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from kafka_helpers import WorkerProcess, produce, run
from recovery_helpers import answered_event_ids, movielens_slice, publish_catalog, wait_for

from fusionrec.config import Config
from fusionrec.contracts import BehaviorEvent, ItemUpsert, encode
from fusionrec.evaluation.sasrec import SASRec, SASRecConfig
from fusionrec.learner.sequence import SequenceModel
from stream.topics import ensure_topics

TEXT_DIM = 384  # the bundled MiniLM's vectors, which the adaptor maps


def save_model(path: Path, version: int, seed: int) -> None:
    torch.manual_seed(seed)
    net = SASRec(3, 1, SASRecConfig(dim=16, heads=2, blocks=1, max_len=20, item_text="only"), torch.zeros(4, TEXT_DIM))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    SequenceModel.from_arrays(arrays, ["movies"], heads=2, version=version).save(path)


def started_worker(bootstrap: str, artifacts_dir: Path, items: list[ItemUpsert], env: dict[str, str]) -> tuple[WorkerProcess, Config]:
    """A worker of the movies platform with ``env``, its topics created and its catalog loaded."""
    worker = WorkerProcess(bootstrap, ("movies",), extra_env=env)
    cfg = worker.config()
    run(ensure_topics(cfg))
    publish_catalog(cfg, bootstrap, items)
    worker.start(artifacts_dir)
    try:
        worker.wait_ready(len(items))
    except BaseException:
        worker.stop()
        raise
    return worker, cfg


def test_a_worker_serves_the_sequence_model_and_follows_a_newer_file(bootstrap: str, artifacts_dir: Path, tmp_path: Path) -> None:
    items, events = movielens_slice(400, extra_items=100)
    path = tmp_path / "seq.npz"
    save_model(path, version=1, seed=0)
    env = {"FUSIONREC_SEQUENCE_MODEL": str(path), "FUSIONREC_SEQUENCE_MODEL_CHECK_S": "0.5"}
    worker, cfg = started_worker(bootstrap, artifacts_dir, items, env)
    try:
        assert worker.health()["sequence_model_version"] == 1
        first, second = events[: len(events) // 2], events[len(events) // 2 :]
        send = lambda batch: run(produce(bootstrap, [(cfg.kafka.events_topic(e.platform), e.user_id.encode(), encode(e)) for e in batch]))  # noqa: E731
        send(first)
        assert {e.event_id for e in first} <= set(answered_event_ids(cfg, bootstrap, {e.event_id for e in first}))
        save_model(path, version=2, seed=1)
        wait_for(lambda: worker.health().get("sequence_model_version") == 2, 60, f"the newer file served\n{worker.log_tail()}")
        send(second)
        want = {e.event_id for e in events}
        assert want <= set(answered_event_ids(cfg, bootstrap, want)), worker.log_tail()
        assert "serving the sequence model" in worker.log_tail(400)
    finally:
        worker.stop()


def cycle_walks(films: list[str], people: int, seed: int = 0) -> list[BehaviorEvent]:
    """Each person clicks along the cycle of ``films`` from a random one: the next film is always the
    following one (a pattern an untrained network learns within a few epochs)."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(people):
        start, length = int(rng.integers(len(films))), int(rng.integers(5, 9))
        out += [BehaviorEvent(f"w{u}-{t}", 1_000.0 + t, "movies", f"walker{u}", films[(start + t) % len(films)], "click") for t in range(length)]
    return sorted(out, key=lambda e: e.ts)


def test_a_worker_fine_tunes_the_served_network_on_the_journeys_it_sees(bootstrap: str, artifacts_dir: Path, tmp_path: Path) -> None:
    items, _ = movielens_slice(0, extra_items=30)
    path = tmp_path / "seq.npz"
    save_model(path, version=1, seed=0)
    env = {
        "FUSIONREC_SEQUENCE_MODEL": str(path),
        "FUSIONREC_SEQUENCE_FINETUNE_EVERY_S": "5",
        "FUSIONREC_SEQUENCE_FINETUNE_MIN_PEOPLE": "100",
        "FUSIONREC_SEQUENCE_FINETUNE_EPOCHS": "20",
        "FUSIONREC_SEQUENCE_FINETUNE_MAX_S": "60",
    }
    worker, cfg = started_worker(bootstrap, artifacts_dir, items, env)
    try:
        events = cycle_walks([i.item_id for i in items], 200)
        run(produce(bootstrap, [(cfg.kafka.events_topic(e.platform), e.user_id.encode(), encode(e)) for e in events]))
        want = {e.event_id for e in events}
        assert want <= set(answered_event_ids(cfg, bootstrap, want)), worker.log_tail()
        wait_for(lambda: worker.health().get("sequence_model_version") == 2, 120, f"the fine-tuned network served\n{worker.log_tail()}")
        rounds = worker.health()["sequence_finetune_rounds"]
        assert isinstance(rounds, dict) and rounds["served"] >= 1 and rounds["run"] >= rounds["served"]
        assert SequenceModel.load(path).version == 2  # written over the file the other workers follow
    finally:
        worker.stop()
    saved = sorted(Path(worker.env["FUSIONREC_DATA_DIR"]).glob("checkpoints/ckpt-*/model/sequence.npz"))
    assert saved and SequenceModel.load(saved[-1]).version == 2  # the clean shutdown's checkpoint holds it
    saved_at = saved[-1].stat().st_mtime
    save_model(path, version=1, seed=0)  # the file as it was deployed, before the checkpoint
    os.utime(path, (saved_at - 60, saved_at - 60))
    worker.start(artifacts_dir)  # the same worker again: its data dir, its group
    try:
        worker.wait_ready(len(items))
        assert worker.health()["sequence_model_version"] == 2, worker.log_tail()  # the checkpoint's network
    finally:
        worker.stop()

"""A worker serving a learned sequence model on the real broker, and taking a newer file without a restart.

The worker starts with ``model.sequence_model`` pointing at a file (version 1) and answers MovieLens
events with the network's ``seq`` feature computed for every request; the file is then replaced by
``SequenceModel.save`` (a rename, as ``train-sequence --out`` does) with version 2, and the worker must
serve version 2 within seconds (``/health``) and keep answering every event.
"""

from __future__ import annotations

from pathlib import Path

import torch
from kafka_helpers import WorkerProcess, produce, run
from recovery_helpers import answered_event_ids, movielens_slice, publish_catalog, wait_for

from fusionrec.contracts import encode
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


def test_a_worker_serves_the_sequence_model_and_follows_a_newer_file(bootstrap: str, artifacts_dir: Path, tmp_path: Path) -> None:
    items, events = movielens_slice(400, extra_items=100)
    path = tmp_path / "seq.npz"
    save_model(path, version=1, seed=0)
    worker = WorkerProcess(
        bootstrap, ("movies",), extra_env={"FUSIONREC_SEQUENCE_MODEL": str(path), "FUSIONREC_SEQUENCE_MODEL_CHECK_S": "0.5"}
    )
    cfg = worker.config()
    run(ensure_topics(cfg))
    publish_catalog(cfg, bootstrap, items)
    worker.start(artifacts_dir)
    try:
        worker.wait_ready(len(items))
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

"""Readiness polling of the local broker is quiet, and says clearly why when it gives up."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator

import pytest

from fusionrec.errors import BrokerError
from stream.kafka_local.broker import LocalCluster, free_port


@pytest.fixture()
def silent_broker(tmp_path) -> Iterator[LocalCluster]:  # type: ignore[no-untyped-def]
    """A cluster whose one node is "running" (a live process) while nothing listens on its port."""
    cluster = LocalCluster(tmp_path / "kafka", port=free_port())
    (node,) = cluster.nodes
    node.data_dir.mkdir(parents=True)
    node.log_file.write_text("[2024-01-01] INFO starting\n[2024-01-01] ERROR Disk error while locking directory\n")
    stand_in = subprocess.Popen(["sleep", "120"])
    node.pid_file.write_text(str(stand_in.pid))
    try:
        yield cluster
    finally:
        stand_in.kill()
        stand_in.wait()


def test_polling_a_broker_that_never_answers_is_quiet_then_one_clear_error(
    silent_broker: LocalCluster, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    levels = {name: logging.getLogger(name).level for name in ("aiokafka", "aiokafka.conn")}
    with pytest.raises(BrokerError) as info:
        silent_broker.wait_ready(timeout_s=3)
    noisy = [r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]
    out, err = capfd.readouterr()
    assert "Unable connect" not in out + err
    message = str(info.value)
    assert f"Kafka at {silent_broker.bootstrap} not ready after 3s" in message
    assert "Disk error while locking directory" in message  # the tail of the broker's log says why
    assert {name: logging.getLogger(name).level for name in levels} == levels  # restored after the poll

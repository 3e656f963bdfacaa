"""A real Apache Kafka broker for the whole test session (or the cluster FUSIONREC_TEST_BOOTSTRAP names)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.kafka_local.broker import LocalCluster, free_port


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("FUSIONREC_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("kafka"), port=free_port())
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "artifacts"
    path.mkdir(exist_ok=True)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)

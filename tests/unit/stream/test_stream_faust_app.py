"""The faust app only hosts the worker (web pages, timers); the hot path owns Kafka, and a rebalance
lets partitions go only after the iteration in progress has finished.

(The earlier tests here checked ``ClearOnceFlowControl``, which emptied faust's stream buffers once
per rebalance.  faust no longer consumes anything: ``stream.worker.HotPath`` reads with ``getmany``
and holds no buffer across a rebalance, so what those tests guarded is checked below as "faust starts
no Kafka service" and "a revocation waits for the iteration in progress".)
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from fusionrec.config import Config
from stream.faust_app import WebOnlyBoot, WorkerApp
from stream.metrics import Metrics, OnlineRecall
from stream.worker import HotPath


def test_the_worker_app_starts_the_web_server_and_no_kafka_service() -> None:
    async def scenario() -> tuple[object, list[str]]:
        app = WorkerApp("t-faust-app", broker="kafka://127.0.0.1:1", store="memory://")
        return app.boot_strategy, [type(s).__name__ for s in app.boot_strategy.server()]

    boot, services = asyncio.run(scenario())
    assert isinstance(boot, WebOnlyBoot)
    assert "Web" in services
    assert not set(services) & {"Consumer", "Producer", "Conductor", "Fetcher", "AgentManager", "TableManager"}, services


def test_a_revocation_waits_for_the_iteration_in_progress_then_releases_the_partitions() -> None:
    cfg = Config(platforms=("shop",))
    by_person = cfg.kafka.by_person_topic

    async def scenario() -> list[str]:
        hot = HotPath(cfg, rec=None, catalog=None, metrics=Metrics(), recall=OnlineRecall(Metrics()))  # type: ignore[arg-type]
        mine = {TopicPartition(by_person, 0), TopicPartition(by_person, 1), TopicPartition("events.shop", 0)}
        hot.assigned = set(mine)
        hot.states.owned = {0, 1}
        steps: list[str] = []

        async def iteration() -> None:
            async with hot.lock:
                steps.append("iteration starts")
                await asyncio.sleep(0.05)
                steps.append("iteration ends")

        running = asyncio.create_task(iteration())
        await asyncio.sleep(0)  # the iteration holds the lock
        await hot.on_revoked({TopicPartition(by_person, 1)})
        steps.append("revoked")
        await running
        assert hot.states.owned == {0}
        assert hot.assigned == mine - {TopicPartition(by_person, 1)}
        return steps

    assert asyncio.run(scenario()) == ["iteration starts", "iteration ends", "revoked"]

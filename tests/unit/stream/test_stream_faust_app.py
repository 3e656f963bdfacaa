"""The worker's flow control empties stream buffers once per rebalance, not at every resume."""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlQueue

from stream.faust_app import ClearOnceFlowControl, WorkerApp


def _queue(flow: ClearOnceFlowControl) -> FlowControlQueue[int]:
    return FlowControlQueue(maxsize=100, flow_control=flow, clear_on_resume=True)


def test_a_rebalance_empties_the_buffers_once() -> None:
    async def scenario() -> list[int]:
        flow = ClearOnceFlowControl()
        queue = _queue(flow)
        flow.resume()
        queue.put_nowait(1)  # fetched before the rebalance
        flow.suspend()  # the rebalance begins
        flow.resume()  # recovery resumes flow: the stale message goes
        assert queue.empty()
        queue.put_nowait(2)  # fetched after the seek to the committed offsets
        flow.resume()  # the end of the rebalance resumes again: the fresh message stays
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(scenario()) == [2]


def test_every_suspend_makes_the_next_resume_clear() -> None:
    async def scenario() -> int:
        flow = ClearOnceFlowControl()
        queue = _queue(flow)
        for n in range(3):
            flow.suspend()
            queue.put_nowait(n)
            flow.resume()
            assert queue.empty(), n
        assert flow.is_active()
        return queue.qsize()

    assert asyncio.run(scenario()) == 0


def test_the_worker_app_uses_it() -> None:
    async def scenario() -> object:
        app = WorkerApp("t-faust-app", broker="kafka://127.0.0.1:1", store="memory://")
        return app.flow_control

    assert isinstance(asyncio.run(scenario()), ClearOnceFlowControl)

"""The faust App class the worker runs: faust's, with its stream buffers cleared once per rebalance.

faust (0.15) empties every stream buffer each time flow control resumes.  A rebalance resumes it
more than once, and the last time comes after the stream partitions have been resumed and sought
to their committed offsets: messages fetched in that window are dropped from the buffers while the
fetch position has already moved past them.  They are never processed and their partition's
committed offset stops there for good (seen after a SIGKILLed worker restarted into a backlog: a
partition with lag that never drained, events that never got a recommendation).

Buffers only need emptying of what was fetched before the rebalance began; flow control is
suspended from then on, so that happens here at the first resume after a suspend, and later
resumes leave the buffers alone.
"""

from __future__ import annotations

import faust
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

__all__ = ["ClearOnceFlowControl", "WorkerApp"]


class ClearOnceFlowControl(FlowControlEvent):
    """Flow control that empties the managed buffers at the first resume after each suspend."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stale = True  # starts suspended

    def suspend(self) -> None:
        super().suspend()
        self.stale = True

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()
        if self.stale:
            self.clear()
            self.stale = False


class WorkerApp(faust.App):
    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return ClearOnceFlowControl(loop=self.loop)

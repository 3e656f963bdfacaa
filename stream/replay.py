"""Publish a dataset folder to the topics (items first, then events in time order) at a chosen rate."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from fusionrec.config import Config
from fusionrec.dataset import read_events, read_items
from stream.client import FusionrecProducer
from stream.topics import ensure_topics


@dataclass(frozen=True)
class ReplayStats:
    items: int
    events: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def replay(
    cfg: Config,
    folder: str | Path,
    *,
    rate: float = 0.0,
    limit: int | None = None,
    skip_items: bool = False,
) -> ReplayStats:
    """Publish ``folder``; ``rate`` events/s (0 = as fast as the broker takes them)."""
    await ensure_topics(cfg)
    n_items = 0
    async with FusionrecProducer(cfg) as producer:
        if not skip_items:
            for item in read_items(folder):
                await producer.send_item(item)
                n_items += 1
            await producer.flush()
        start = time.monotonic()
        n_events = 0
        for n_events, record in enumerate(itertools.islice(read_events(folder), limit), start=1):
            await producer.send_event(record.event)
            if rate > 0:
                ahead = start + n_events / rate - time.monotonic()
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
        await producer.flush()
    return ReplayStats(n_items, n_events, time.monotonic() - start)

"""Before any worker starts: the run's topics, the whole item catalog and every identity link.

A worker reports its catalog ready once it has caught up with the items and identity topics as they
were when it started, so everything is published (and flushed) first: the first measured event then
finds every item and every link in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream.bench.workload import Workload

__all__ = ["publish_catalog"]


async def publish_catalog(cfg: Any, folder: Path, wl: Workload) -> tuple[int, int]:
    """Create the topics, publish ``folder``'s items and ``wl``'s identity links; (items, links)."""
    from fusionrec.contracts import IdentityLink
    from fusionrec.dataset import read_items
    from stream.client import FusionrecProducer
    from stream.topics import ensure_topics

    await ensure_topics(cfg)
    items = links = 0
    async with FusionrecProducer(cfg) as producer:
        for item in read_items(folder):
            await producer.send_item(item)
            items += 1
        for platform, user_id, person_id in wl.links():
            await producer.send_link(IdentityLink(platform=platform, user_id=user_id, person_id=person_id))
            links += 1
    return items, links

"""Read a dataset folder (``items.tsv.gz`` and ``events.tsv.gz``, layout in the README) as contracts."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fusionrec.contracts import BehaviorEvent, ItemUpsert
from fusionrec.errors import DatasetError

__all__ = ["DatasetEvent", "read_items", "read_events", "dataset_platforms"]

ITEM_COLUMNS = ["item_id", "platform", "title", "text"]
EVENT_COLUMNS = ["ts", "user_id", "platform", "item_id", "event_type", "value", "role"]


@dataclass(frozen=True, slots=True)
class DatasetEvent:
    event: BehaviorEvent
    role: str  # "history" or "target"


def _rows(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise DatasetError(f"{path} is missing; a dataset folder holds items.tsv.gz and events.tsv.gz")
    csv.field_size_limit(1 << 24)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or header[: len(columns)] != columns:
            raise DatasetError(f"{path}: header {header} is not {columns}")
        for lineno, row in enumerate(reader, start=2):
            row += [""] * (len(columns) - len(row))
            yield lineno, dict(zip(columns, row))


def read_items(folder: str | Path) -> Iterator[ItemUpsert]:
    for _, row in _rows(Path(folder) / "items.tsv.gz", ITEM_COLUMNS):
        yield ItemUpsert(item_id=row["item_id"], platform=row["platform"], title=row["title"], text=row["text"])


def read_events(folder: str | Path) -> Iterator[DatasetEvent]:
    """Events in file order (sorted by ts); event ids are ``<folder name>:<line>`` (stable across replays)."""
    name = Path(folder).resolve().name
    for lineno, row in _rows(Path(folder) / "events.tsv.gz", EVENT_COLUMNS):
        try:
            event = BehaviorEvent(
                event_id=f"{name}:{lineno}",
                ts=float(row["ts"]),
                platform=row["platform"],
                user_id=row["user_id"],
                item_id=row["item_id"],
                event_type=row["event_type"],
                value=float(row["value"]) if row["value"] else None,
            )
        except ValueError as exc:
            raise DatasetError(f"{folder}/events.tsv.gz line {lineno}: {exc}") from exc
        yield DatasetEvent(event, row["role"] or "history")


def dataset_platforms(folder: str | Path) -> list[str]:
    return sorted({item.platform for item in read_items(folder)})

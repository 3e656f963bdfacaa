"""Dataset folders (items.tsv.gz + events.tsv.gz) read as contracts."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest

from fusionrec.contracts import BehaviorEvent, ItemUpsert
from fusionrec.dataset import EVENT_COLUMNS, ITEM_COLUMNS, DatasetEvent, dataset_platforms, read_events, read_items
from fusionrec.errors import DatasetError

MOVIELENS = Path(__file__).resolve().parents[3] / "data" / "movielens-small"


def write_gz(path: Path, lines: list[list[str]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        for line in lines:
            fh.write("\t".join(line) + "\n")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-set"
    folder.mkdir()
    write_gz(
        folder / "items.tsv.gz",
        [
            ITEM_COLUMNS,
            ["i1", "shop", "Kettle", "Boils water. Fast."],
            ["i2", "video", "A film \"quoted\"", ""],
            ["i3", "shop", "No text column"],  # short row: padded with empty fields
        ],
    )
    write_gz(
        folder / "events.tsv.gz",
        [
            EVENT_COLUMNS,
            ["100", "u1", "shop", "i1", "click", "", "history"],
            ["200.5", "u1", "video", "i2", "rating", "4.5", "history"],
            ["300", "u2", "shop", "i3", "purchase", "", "target"],
            ["400", "u2", "shop", "i1", "view"],  # no value, no role: a history event
        ],
    )
    return folder


def test_read_items(tiny: Path) -> None:
    items = list(read_items(tiny))
    assert items == [
        ItemUpsert("i1", "shop", "Kettle", "Boils water. Fast."),
        ItemUpsert("i2", "video", 'A film "quoted"', ""),
        ItemUpsert("i3", "shop", "No text column", ""),
    ]
    assert dataset_platforms(tiny) == ["shop", "video"]


def test_read_events(tiny: Path) -> None:
    events = list(read_events(tiny))
    assert [e.role for e in events] == ["history", "history", "target", "history"]
    assert events[0] == DatasetEvent(BehaviorEvent("tiny-set:2", 100.0, "shop", "u1", "i1", "click"), "history")
    assert events[1].event == BehaviorEvent("tiny-set:3", 200.5, "video", "u1", "i2", "rating", value=4.5)
    assert [e.event.event_id for e in events] == ["tiny-set:2", "tiny-set:3", "tiny-set:4", "tiny-set:5"]
    assert events[3].event.value is None and events[3].event.event_type == "view"


def test_event_ids_use_the_resolved_folder_name(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny)
    assert next(read_events(".")).event.event_id == "tiny-set:2"
    assert next(read_events(tiny / ".." / "tiny-set")).event.event_id == "tiny-set:2"


def test_reading_is_lazy(tiny: Path) -> None:
    stream = read_events(tiny)
    assert next(stream).event.item_id == "i1"  # a generator, not a list read up front


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    write_gz(tmp_path / "items.tsv.gz", [[*ITEM_COLUMNS, "extra"], ["i1", "shop", "T", "x", "ignored"]])
    assert list(read_items(tmp_path)) == [ItemUpsert("i1", "shop", "T", "x")]


@pytest.mark.parametrize(
    "header",
    [
        ["item_id", "platform", "text", "title"],  # swapped
        ["id", "platform", "title", "text"],
        ["item_id", "platform", "title"],  # a column short
        [],
    ],
)
def test_wrong_item_header(tmp_path: Path, header: list[str]) -> None:
    write_gz(tmp_path / "items.tsv.gz", [header, ["i1", "shop", "T", "x"]])
    with pytest.raises(DatasetError, match="header"):
        list(read_items(tmp_path))


def test_empty_file_is_a_wrong_header(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "events.tsv.gz", "wt"):
        pass
    with pytest.raises(DatasetError, match="header None"):
        list(read_events(tmp_path))


def test_wrong_event_header(tmp_path: Path) -> None:
    write_gz(tmp_path / "events.tsv.gz", [["timestamp", *EVENT_COLUMNS[1:]], ["1", "u", "shop", "i", "click", "", ""]])
    with pytest.raises(DatasetError, match="header") as info:
        list(read_events(tmp_path))
    assert isinstance(info.value, ValueError)
    assert "ts" in str(info.value)  # the expected columns are named


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="items.tsv.gz is missing"):
        list(read_items(tmp_path))
    with pytest.raises(DatasetError, match="events.tsv.gz"):
        list(read_events(tmp_path))


@pytest.mark.parametrize("column, bad", [(0, "yesterday"), (5, "five")])
def test_bad_number_names_the_line(tmp_path: Path, column: int, bad: str) -> None:
    row = ["1", "u", "shop", "i", "rating", "3", "history"]
    row[column] = bad
    write_gz(tmp_path / "events.tsv.gz", [EVENT_COLUMNS, ["0", "u", "shop", "i", "click", "", ""], row])
    events = read_events(tmp_path)
    assert next(events).event.ts == 0.0
    with pytest.raises(DatasetError, match=r"line 3") as info:
        next(events)
    assert bad in str(info.value)


def test_not_gzip_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "items.tsv.gz").write_text("\t".join(ITEM_COLUMNS) + "\n")
    with pytest.raises(OSError):  # gzip.BadGzipFile
        list(read_items(tmp_path))


# --------------------------------------------------------------------------------- the shipped set


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason="data/movielens-small is not in this checkout")
def test_movielens_small() -> None:
    items = list(read_items(MOVIELENS))
    assert len(items) == 7998
    assert len({i.item_id for i in items}) == 7998
    assert {i.platform for i in items} == {"movies"}
    count, first, last_ts, targets, users = 0, None, float("-inf"), 0, set()
    for de in read_events(MOVIELENS):
        if first is None:
            first = de
        count += 1
        assert de.event.ts >= last_ts  # file order is time order
        last_ts = de.event.ts
        targets += de.role == "target"
        users.add(de.event.user_id)
    assert count == 96677
    assert first is not None and first.event.event_id == "movielens-small:2"
    assert first.event.platform == "movies" and first.event.event_type == "rating"
    assert targets == len(users) == 671  # README: each user's last rating is a target
    assert dataset_platforms(MOVIELENS) == ["movies"]


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason="data/movielens-small is not in this checkout")
def test_movielens_events_name_known_items() -> None:
    known = {i.item_id for i in read_items(MOVIELENS)}
    head = list(itertools.islice(read_events(MOVIELENS), 5000))
    assert all(de.event.item_id in known for de in head)
    assert all(de.event.value is not None and 0 < de.event.value <= 5 for de in head)

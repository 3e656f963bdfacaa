"""Dataset folders as workloads: identity links for real multi-platform sets, people per batch."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from stream.bench.workload import Workload, distinct_per_batch, load_workload


def _dataset(folder: Path, events: list[tuple[str, str, str]], identity: list[tuple[str, str, str]] | None = None) -> Path:
    """A tiny dataset folder: events are (user, platform, item)."""
    folder.mkdir(parents=True)
    items = sorted({(p, i) for _, p, i in events})
    with gzip.open(folder / "items.tsv.gz", "wt") as fh:
        fh.write("item_id\tplatform\ttitle\ttext\n" + "".join(f"{i}\t{p}\tT {i}\t\n" for p, i in items))
    with gzip.open(folder / "events.tsv.gz", "wt") as fh:
        fh.write("ts\tuser_id\tplatform\titem_id\tevent_type\tvalue\trole\n")
        fh.write("".join(f"{k}\t{u}\t{p}\t{i}\treview\t\thistory\n" for k, (u, p, i) in enumerate(events)))
    if identity is not None:
        with gzip.open(folder / "identity.tsv.gz", "wt") as fh:
            fh.write("platform\tuser_id\tperson_id\n" + "".join(f"{p}\t{u}\t{q}\n" for p, u, q in identity))
    return folder


def test_multi_platform_dataset_links_one_user_id_to_one_person(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "two", [("A", "arts", "a1"), ("A", "office", "o1"), ("B", "arts", "a2")])
    wl = load_workload(folder, cache_dir=tmp_path / "cache")
    assert wl.platforms == ("arts", "office")
    assert sorted(wl.links()) == [("arts", "A", "u:A"), ("arts", "B", "u:B"), ("office", "A", "u:A")]
    assert wl.ev_person[0] == wl.ev_person[1] != wl.ev_person[2]  # A on both platforms is one person
    assert list((tmp_path / "cache").glob("two-*.npz"))  # converted once, into the cache, not the folder
    assert not (folder / "workload.npz").exists()


def test_single_platform_dataset_has_no_links_and_the_workers_person_names(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "one", [("1", "movies", "m1"), ("2", "movies", "m2"), ("1", "movies", "m2")])
    wl = load_workload(folder, cache_dir=tmp_path / "cache")
    assert list(wl.links()) == []
    assert sorted(map(str, wl.persons)) == ["movies:1", "movies:2"]
    assert wl.ev_person[0] == wl.ev_person[2]


def test_identity_file_wins(tmp_path: Path) -> None:
    events = [("s1", "shop", "i1"), ("v9", "video", "i2")]
    folder = _dataset(tmp_path / "ids", events, identity=[("shop", "s1", "alice"), ("video", "v9", "alice")])
    wl = load_workload(folder, cache_dir=tmp_path / "cache")
    assert sorted(wl.links()) == [("shop", "s1", "alice"), ("video", "v9", "alice")]
    assert wl.ev_person[0] == wl.ev_person[1]


def test_save_load_round_trip_and_cycling(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "rt", [("A", "arts", "a1"), ("B", "office", "o1"), ("C", "arts", "a1")])
    wl = load_workload(folder, cache_dir=tmp_path / "cache")
    wl.save(tmp_path / "w.npz")
    back = Workload.load(tmp_path / "w.npz")
    assert back.platforms == wl.platforms and back.event_types == wl.event_types and back.name == wl.name
    assert np.array_equal(back.ev_item, wl.ev_item) and list(back.users) == list(wl.users)
    assert back.indices(2, 4).tolist() == [2, 0, 1, 2]


def test_distinct_people_per_batch() -> None:
    persons = np.array([0, 0, 1, 1, 2, 3, 3, 3])
    assert distinct_per_batch(persons, batch=4) == {"batch": 4, "windows": 2, "mean": 2.0, "min": 2.0, "p50": 2.0, "max": 2.0}
    assert distinct_per_batch(np.arange(10), batch=512)["mean"] == 10.0  # one short window counts
    assert distinct_per_batch(np.array([], dtype=np.int32))["windows"] == 0

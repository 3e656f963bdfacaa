"""The synthetic workload: deterministic by seed, Zipf items, linked identities, interleaved people."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fusionrec.dataset import dataset_platforms, read_events, read_items
from stream.bench.synthetic import WORDS, SyntheticSpec, ensure_synthetic, generate, zipf_weights
from stream.bench.workload import Workload, distinct_per_batch, load_workload

SMALL = SyntheticSpec(items=600, people=3000, platforms=3, events=30_000, topics=16, seed=7)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Workload]:
    folder = tmp_path_factory.mktemp("syn") / SMALL.name
    return folder, generate(SMALL, folder)


def test_same_seed_same_bytes_other_seed_other_events(small: tuple[Path, Workload], tmp_path: Path) -> None:
    folder, wl = small
    again = generate(SMALL, tmp_path / "again")
    for name in ("items.tsv.gz", "events.tsv.gz", "identity.tsv.gz"):
        assert (folder / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert np.array_equal(wl.ev_item, again.ev_item) and np.array_equal(wl.ev_user, again.ev_user)
    other = generate(SyntheticSpec(**{**SMALL.__dict__, "seed": 8}), tmp_path / "other")
    assert not np.array_equal(wl.ev_item, other.ev_item)


def test_folder_is_a_dataset_the_project_reads(small: tuple[Path, Workload]) -> None:
    folder, wl = small
    items = list(read_items(folder))
    assert len(items) == SMALL.items and len({i.item_id for i in items}) == SMALL.items
    assert dataset_platforms(folder) == sorted(SMALL.platform_names)
    assert all(i.title and i.text and len(i.title) + len(i.text) < 160 for i in items)  # short: encoded on the CPU
    events = list(read_events(folder))
    assert len(events) == SMALL.events
    assert [e.event.ts for e in events] == sorted(e.event.ts for e in events)
    assert {e.event.event_type for e in events} <= {"view", "click", "like", "purchase", "review", "rating"}
    assert all((e.event.value is not None) == (e.event.event_type == "rating") for e in events)
    known = {i.item_id: i.platform for i in items}
    assert all(known[e.event.item_id] == e.event.platform for e in events)  # items of the event's platform


def test_workload_file_matches_the_text_files(small: tuple[Path, Workload]) -> None:
    folder, wl = small
    loaded = load_workload(folder)  # the folder's own workload.npz
    assert np.array_equal(loaded.ev_person, wl.ev_person)
    first = next(iter(read_events(folder))).event
    assert (str(wl.users[wl.ev_user[0]]), str(wl.items[wl.ev_item[0]])) == (first.user_id, first.item_id)


def test_identity_links_every_user_id_to_one_person(small: tuple[Path, Workload]) -> None:
    folder, wl = small
    with gzip.open(folder / "identity.tsv.gz", "rt") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh][1:]
    assert len(rows) == len(wl.users) == len(set((p, u) for p, u, _ in rows))
    by_person: dict[str, set[str]] = {}
    for platform, user, person in rows:
        by_person.setdefault(person, set()).add(platform)
    assert len(by_person) == SMALL.people  # everyone has at least one account
    multi = sum(1 for plats in by_person.values() if len(plats) > 1) / SMALL.people
    assert multi > 0.8  # most people are on several platforms (80 % chance per platform)
    assert len({u for _, u, _ in rows}) == len(rows)  # a user id is never shared across platforms
    # each event's person is the person its (platform, user) is linked to
    link = {(p, u): q for p, u, q in rows}
    k = np.arange(0, SMALL.events, 97)
    plats = np.array(wl.platforms)[wl.ev_platform[k]]
    assert all(link[(p, str(wl.users[u]))] == str(wl.persons[q]) for p, u, q in zip(plats, wl.ev_user[k], wl.ev_person[k]))


def test_a_batch_holds_hundreds_of_people(small: tuple[Path, Workload]) -> None:
    _, wl = small
    assert distinct_per_batch(wl.ev_person)["mean"] > 400


def test_people_keep_to_their_topics(small: tuple[Path, Workload]) -> None:
    """Items of one topic share words; a person's items share far more words than random pairs of items."""
    folder, wl = small
    vocabulary = set(WORDS)  # topic words come from it; adjectives, "with", "and" and numbers do not
    words = {i.item_id: set((i.title + " " + i.text).replace(",", "").split()) & vocabulary for i in read_items(folder)}
    overlap = lambda a, b: len(words[a] & words[b]) / len(words[a] | words[b])  # noqa: E731
    rng = np.random.default_rng(0)
    all_items = list(words)
    random_pairs = np.mean([overlap(*rng.choice(all_items, 2, replace=False)) for _ in range(500)])
    heavy = np.bincount(wl.ev_person).argmax()
    mine = [str(wl.items[i]) for i in wl.ev_item[wl.ev_person == heavy]]
    assert len(mine) >= 20
    own_pairs = np.mean([overlap(*rng.choice(mine, 2, replace=False)) for _ in range(500)])
    assert own_pairs > 2 * random_pairs


def test_item_popularity_is_zipf(tmp_path: Path) -> None:
    """One platform, one topic: the item counts by rank follow rank^-1."""
    wl = generate(SyntheticSpec(items=1000, people=2000, platforms=1, events=200_000, topics=1, seed=3), tmp_path / "z")
    counts = np.sort(np.bincount(wl.ev_item, minlength=1000))[::-1].astype(float)
    ranks = np.arange(1, 101)
    slope = np.polyfit(np.log(ranks), np.log(counts[:100]), 1)[0]
    assert -1.15 < slope < -0.85
    expected_top = 200_000 * zipf_weights(1000, 1.0)[0]
    assert abs(counts[0] - expected_top) < 0.1 * expected_top


def test_ensure_reuses_the_folder(tmp_path: Path) -> None:
    spec = SyntheticSpec(items=200, people=500, platforms=2, events=2000, topics=4)
    folder = ensure_synthetic(spec, tmp_path)
    assert folder == tmp_path / spec.name and (folder / "spec.json").exists()
    mtime = (folder / "events.tsv.gz").stat().st_mtime_ns
    assert ensure_synthetic(spec, tmp_path) == folder
    assert (folder / "events.tsv.gz").stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_too_small_a_catalog_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="topics"):
        generate(SyntheticSpec(items=10, platforms=2, topics=8), tmp_path)

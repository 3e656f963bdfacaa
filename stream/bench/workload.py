"""A workload as arrays: the events the bench publishes, the identity links, the people behind them.

Parsing a dataset's text rows costs seconds, and the publisher starts once per offered-rate step, so a
dataset folder is read once into compact arrays (``workload.npz``) that the publisher loads in a
fraction of a second.  The synthetic generator writes that file directly; a real dataset folder is
converted once into the bench cache (``~/.cache/fusionrec/bench-data/workloads``), never next to the
data (``../shared/data`` is read-only and must stay untouched).

Person resolution is the worker's: a link from the identity file when there is one (synthetic sets);
for a real dataset with several platforms, where one ``user_id`` is the same person on every platform
(amazon-arts-office), the link ``(platform, user_id) → u:<user_id>``; for a single-platform set no link,
and the person is ``<platform>:<user_id>`` as the worker names it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

__all__ = ["Workload", "load_workload", "distinct_per_batch", "IDENTITY_FILE", "WORKLOAD_FILE"]

IDENTITY_FILE = "identity.tsv.gz"
WORKLOAD_FILE = "workload.npz"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Workload:
    """Events of a dataset as parallel arrays of indices into string tables.

    Event ``k`` is ``users[ev_user[k]]`` on ``platforms[ev_platform[k]]`` doing ``event_types[ev_type[k]]``
    on ``items[ev_item[k]]`` (``ev_value[k]`` NaN: no value); it belongs to person ``persons[ev_person[k]]``.
    Identity link ``j`` is ``(platforms[link_platform[j]], users[link_user[j]]) → persons[link_person[j]]``.
    """

    name: str
    platforms: tuple[str, ...]
    event_types: tuple[str, ...]
    users: np.ndarray
    items: np.ndarray
    persons: np.ndarray
    ev_platform: np.ndarray
    ev_user: np.ndarray
    ev_item: np.ndarray
    ev_type: np.ndarray
    ev_value: np.ndarray
    ev_person: np.ndarray
    link_platform: np.ndarray
    link_user: np.ndarray
    link_person: np.ndarray

    def __len__(self) -> int:
        return len(self.ev_user)

    def indices(self, start: int, count: int) -> np.ndarray:
        """Positions of ``count`` events from ``start`` on, cycling through the events."""
        return (start + np.arange(count, dtype=np.int64)) % len(self)

    def links(self) -> Iterator[tuple[str, str, str]]:
        """Every identity link as ``(platform, user_id, person_id)``."""
        plats, users, persons = self.platforms, self.users, self.persons
        for p, u, q in zip(self.link_platform.tolist(), self.link_user.tolist(), self.link_person.tolist()):
            yield plats[p], str(users[u]), str(persons[q])

    def save(self, path: Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        meta = {"version": FORMAT_VERSION, "name": self.name, "platforms": self.platforms, "event_types": self.event_types}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Workload:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"{path}: workload format {meta.get('version')}, this code reads {FORMAT_VERSION}")
            arrays = {f.name: z[f.name] for f in fields(cls) if f.name in z.files}
        return cls(name=meta["name"], platforms=tuple(meta["platforms"]), event_types=tuple(meta["event_types"]), **arrays)


def distinct_per_batch(persons: np.ndarray, batch: int = 512) -> dict[str, float]:
    """Distinct people in each consecutive ``batch``-event window of ``persons`` (in publish order).

    What a worker's micro-batch of ``batch`` events sees when it takes them in order: the more distinct
    people, the less per-person work is shared within a batch.  The last partial window is left out
    unless it is the only one.
    """
    n = len(persons)
    if n == 0:
        return {"batch": batch, "windows": 0, "mean": 0.0, "min": 0.0, "p50": 0.0, "max": 0.0}
    full = max(n // batch, 1)
    counts = np.array([len(np.unique(persons[k * batch : (k + 1) * batch])) for k in range(full)], dtype=np.float64)
    return {
        "batch": batch,
        "windows": full,
        "mean": round(float(counts.mean()), 1),
        "min": float(counts.min()),
        "p50": float(np.median(counts)),
        "max": float(counts.max()),
    }


def load_workload(folder: str | Path, cache_dir: Path | None = None) -> Workload:
    """The workload of a dataset folder: its ``workload.npz`` if it has one, else converted once and cached."""
    folder = Path(folder).resolve()
    own = folder / WORKLOAD_FILE
    if own.exists():
        return Workload.load(own)
    from stream.bench.synthetic import bench_data_root

    cache = (cache_dir or bench_data_root() / "workloads") / f"{folder.name}-{_fingerprint(folder)}.npz"
    if cache.exists():
        return Workload.load(cache)
    wl = _from_dataset(folder)
    cache.parent.mkdir(parents=True, exist_ok=True)
    wl.save(cache)
    return wl


def _fingerprint(folder: Path) -> str:
    """Changes when any input file changes (path, size, mtime) or the conversion does."""
    h = hashlib.sha1(f"v{FORMAT_VERSION}:{folder}".encode())
    for name in ("events.tsv.gz", "items.tsv.gz", IDENTITY_FILE):
        p = folder / name
        if p.exists():
            st = p.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _from_dataset(folder: Path) -> Workload:
    from fusionrec.dataset import read_events, read_items

    platforms = tuple(sorted({item.platform for item in read_items(folder)}))
    items = sorted({item.item_id for item in read_items(folder)})
    plat_ix = {p: k for k, p in enumerate(platforms)}
    item_ix = {i: k for k, i in enumerate(items)}
    user_ix: dict[tuple[int, str], int] = {}  # (platform, user id) -> row of the users table
    users: list[str] = []
    types: dict[str, int] = {}
    cols: dict[str, list[float]] = {"p": [], "u": [], "i": [], "t": [], "v": []}
    for record in read_events(folder):
        e = record.event
        p = plat_ix[e.platform]
        u = user_ix.get((p, e.user_id))
        if u is None:
            u = user_ix[(p, e.user_id)] = len(users)
            users.append(e.user_id)
        cols["p"].append(p)
        cols["u"].append(u)
        cols["i"].append(item_ix[e.item_id])
        cols["t"].append(types.setdefault(e.event_type, len(types)))
        cols["v"].append(np.nan if e.value is None else e.value)

    links = _identity_file(folder, plat_ix, user_ix)
    if links is None and len(platforms) > 1:  # one user id is one person on every platform
        links = {key: f"u:{key[1]}" for key in user_ix}
    persons: dict[str, int] = {}
    person_of_user = np.empty(len(users), dtype=np.int32)
    for (p, uid), u in user_ix.items():
        name = links.get((p, uid), f"{platforms[p]}:{uid}") if links else f"{platforms[p]}:{uid}"
        person_of_user[u] = persons.setdefault(name, len(persons))
    linked = sorted(user_ix[k] for k in links) if links else []
    link_user = np.array(linked, dtype=np.int32)
    ev_user = np.array(cols["u"], dtype=np.int32)
    platform_of_user = np.empty(len(users), dtype=np.int8)
    for (p, _), u in user_ix.items():
        platform_of_user[u] = p
    return Workload(
        name=folder.name,
        platforms=platforms,
        event_types=tuple(types),
        users=np.array(users),
        items=np.array(items),
        persons=np.array(list(persons)),
        ev_platform=np.array(cols["p"], dtype=np.int8),
        ev_user=ev_user,
        ev_item=np.array(cols["i"], dtype=np.int32),
        ev_type=np.array(cols["t"], dtype=np.int8),
        ev_value=np.array(cols["v"], dtype=np.float32),
        ev_person=person_of_user[ev_user],
        link_platform=platform_of_user[link_user],
        link_user=link_user,
        link_person=person_of_user[link_user],
    )


def _identity_file(folder: Path, plat_ix: dict[str, int], user_ix: dict[tuple[int, str], int]) -> dict[tuple[int, str], str] | None:
    """Links of ``identity.tsv.gz`` (``platform, user_id, person_id``) for users that have events."""
    path = folder / IDENTITY_FILE
    if not path.exists():
        return None
    out: dict[tuple[int, str], str] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != ["platform", "user_id", "person_id"]:
            raise ValueError(f"{path}: header {header} is not ['platform', 'user_id', 'person_id']")
        for platform, user_id, person_id in reader:
            key = (plat_ix.get(platform, -1), user_id)
            if key in user_ix:
                out[key] = person_id
    return out

"""A synthetic multi-platform workload, deterministic by seed: many people, linked identities, Zipf items.

The real sets either have one platform (MovieLens, with few people who rate in long sessions, so a
512-event window holds a handful of people) or a modest catalog.  The benchmark needs the shape of the
product's target traffic instead: several platforms, ≥ 100k people each with one user id per platform
linked to one person id, catalogs of 8k and 100k items, skewed item popularity and events of many
people interleaved.

How it is drawn (every draw from one ``numpy`` generator seeded by ``seed``):

* **Topics.** ``topics`` latent topics, each with a small vocabulary of common English words.  An
  item belongs to one topic and its title and text are made mostly of that topic's words, so the
  text encoder puts items of a topic close together, as it does with real items of one genre.
* **Items.** The catalog is split evenly over the platforms; every topic has items on every platform
  (so behaviour on one platform says something about the others).  Topic sizes follow the topics'
  popularity; inside a (platform, topic) group an item's popularity is Zipf in its (random) rank.
* **People.** Each person has 1-3 preferred topics (drawn by topic popularity), an account on each
  platform with probability ``platform_share`` (at least one), and a distinct user id per platform.
  Activity is mildly skewed (Zipf with exponent 0.5), so a 512-event window holds hundreds of people.
* **Events.** Person by activity, platform among the person's, topic among the person's preferred ones
  (``own_topic_share``) or by global topic popularity otherwise, item by Zipf inside the group;
  event types from the worker's default set.  Rows are in time order, as the dataset format wants.

Written into a cache folder (never the repository) in the dataset format of ``fusionrec/dataset.py``,
plus ``identity.tsv.gz`` (``platform, user_id, person_id``) and ``workload.npz`` (the same events as
arrays, read by the open-loop publisher without parsing text).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stream.bench.workload import Workload

__all__ = ["SyntheticSpec", "generate", "ensure_synthetic", "zipf_weights", "bench_data_root", "PLATFORM_NAMES", "WORDS"]

PLATFORM_NAMES = ("shop", "video", "news", "music", "games", "books", "travel", "food")
EVENT_TYPES = ("view", "click", "like", "purchase", "review", "rating")
EVENT_TYPE_SHARES = (0.50, 0.28, 0.08, 0.08, 0.03, 0.03)
BASE_TS = 1_767_225_600.0  # 2026-01-01 UTC; the bench re-stamps events near the wall clock anyway
TS_STEP_S = 0.05  # dataset time between two events (20 events/s)

# Common English words: topic vocabularies are drawn from them, so that the encoder sees real tokens.
WORDS = """
able acid age air alarm album amber angle animal answer apple april arch area arm army art
autumn baby back bag baker ball band bank barn base basket bath beach bean bear bed bee bell belt
bench berry bicycle bird birthday biscuit blade blanket block blood blue board boat body bone book
boot bottle bowl box brain branch brass bread brick bridge brush bubble bucket budget building bulb
butter button cabin cable cake camera camp candle canvas cap car card carpet castle cat cave chain
chair chalk cheese cherry chess chicken child chocolate church circle city clay clock cloth cloud
coat coffee coin cold collar colour comb comet copper corn cotton country cow crayon cream crown
crystal cup curtain cushion dance desert desk diamond dinner doctor dog doll door dragon drawer
dream dress drink drum duck dust eagle earth egg engine evening fabric face factory farm feather
fence festival field film finger fire fish flag flame flower flute fog food forest fork fountain
fox frame friend frog fruit garden gate gem ghost gift glass glove goat gold golf grape grass green
guitar hair hammer hand harbor hat heart helmet hill history holiday honey horse hospital hotel
house ice island jacket jam jar jelly jewel journey juice jungle kettle key king kitchen kite knife
ladder lake lamp lantern laptop leaf leather lemon letter library light lily lion lizard lock
machine magnet map marble market mask meadow medal melody metal milk mirror money monkey moon
morning mountain mouse movie mud museum music nail needle nest net night noodle north notebook
ocean office oil olive onion orange orchestra owl paint palace pan paper parade park party pasta
path pearl pen pencil pepper piano picnic picture pie pillow pilot pipe pirate planet plant plate
pocket poem pond potato pottery prince puzzle queen quilt rabbit radio rain rainbow record ribbon
rice river road robot rock rocket roof room rope rose ruby sail salad salt sand sandwich school
science scissors sea season seed shadow sheep shell ship shirt shoe silk silver singer sky sleep
snake snow soap sock sofa soldier song soup space spice spider spoon spring square stamp star station
steel stone storm story street sugar summer sun sweater table tail tea teacher telescope tent
theatre thread ticket tiger timber toast tomato tool tower town toy tractor train treasure tree
truck trumpet tunnel turtle umbrella valley vase vegetable velvet village violin voice volcano
wagon wall watch water wave wheat wheel whistle window wine winter wire wolf wood wool world yarn
yoga zebra
""".split()
ADJECTIVES = """
ancient bright calm classic clever cosy crisp dark deep elegant fancy fresh gentle golden grand
handmade heavy hidden light little lively lucky magic modern mighty old perfect pink plain quiet
rapid rare red rough royal rustic shiny silent simple small smooth soft solid sparkling spicy
strong sunny sweet tiny tropical vintage warm wild wise wooden young
""".split()


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a synthetic set (the folder name and its content follow from it)."""

    items: int = 8_000
    people: int = 100_000
    platforms: int = 2
    events: int = 1_000_000
    topics: int = 64
    seed: int = 0
    item_zipf: float = 1.0  # popularity of an item ~ rank^-item_zipf inside its (platform, topic) group
    topic_zipf: float = 0.7  # popularity of a topic ~ rank^-topic_zipf
    person_zipf: float = 0.5  # activity of a person ~ rank^-person_zipf (mild: events interleave)
    own_topic_share: float = 0.85  # events on one of the person's preferred topics
    platform_share: float = 0.8  # chance that a person has an account on a given platform

    @property
    def name(self) -> str:
        return f"synthetic-p{self.platforms}-i{self.items}-u{self.people}-e{self.events}-s{self.seed}"

    @property
    def platform_names(self) -> tuple[str, ...]:
        if not 1 <= self.platforms <= len(PLATFORM_NAMES):
            raise ValueError(f"platforms must be 1..{len(PLATFORM_NAMES)}, got {self.platforms}")
        return PLATFORM_NAMES[: self.platforms]


def bench_data_root() -> Path:
    """``FUSIONREC_BENCH_DATA``, else ``~/.cache/fusionrec/bench-data`` (``FUSIONREC_CACHE`` moves the cache root)."""
    if os.environ.get("FUSIONREC_BENCH_DATA"):
        return Path(os.environ["FUSIONREC_BENCH_DATA"]).expanduser()
    return Path(os.environ.get("FUSIONREC_CACHE", "~/.cache/fusionrec")).expanduser() / "bench-data"


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Normalised weights ``rank^-exponent`` for ranks 1..n."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return w / w.sum()


def ensure_synthetic(spec: SyntheticSpec, root: Path | None = None) -> Path:
    """The folder of ``spec`` under ``root``, generated the first time (a few seconds), reused after."""
    folder = (root or bench_data_root()) / spec.name
    marker = folder / "spec.json"
    if marker.exists() and json.loads(marker.read_text()) == asdict(spec):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=folder.parent))
    try:
        generate(spec, tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)  # readers see a whole folder or none
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def generate(spec: SyntheticSpec, folder: Path) -> Workload:
    """Draw the set and write it into ``folder``; returns the workload (events as arrays)."""
    rng = np.random.default_rng(spec.seed)
    platforms = spec.platform_names
    P, T, N = len(platforms), spec.topics, spec.people
    if spec.items < P * T:
        raise ValueError(f"{spec.items} items cannot give each of {T} topics an item on {P} platforms")

    # topics: popularity by rank, a vocabulary each
    topic_pop = zipf_weights(T, spec.topic_zipf)[rng.permutation(T)]
    vocab = [rng.choice(len(WORDS), size=12, replace=False) for _ in range(T)]

    # items: platform p gets items [bounds[p], bounds[p+1]); topic sizes ~ popularity, ≥ 1 per platform
    bounds = np.linspace(0, spec.items, P + 1).astype(np.int64)
    item_platform = np.repeat(np.arange(P), np.diff(bounds))
    item_topic = np.empty(spec.items, dtype=np.int64)
    for p in range(P):
        n = int(bounds[p + 1] - bounds[p])
        topics_p = np.concatenate([np.arange(T), rng.choice(T, size=n - T, p=topic_pop)])
        item_topic[bounds[p] : bounds[p + 1]] = rng.permutation(topics_p)
    item_ids = np.array([f"{platforms[p]}-{k:06d}" for k, p in enumerate(item_platform)])
    titles, texts = _item_texts(rng, item_topic, vocab)

    # (platform, topic) groups: members in a random order = popularity rank; Zipf CDF per group size
    group = item_platform * T + item_topic
    order = np.lexsort((rng.random(spec.items), group))  # by group, random rank inside
    group_start = np.searchsorted(group[order], np.arange(P * T + 1))

    # people: preferred topics, platforms, user ids, activity
    n_pref = rng.integers(1, 4, size=N)
    pref = rng.choice(T, size=(N, 3), p=topic_pop)
    on_platform = rng.random((N, P)) < spec.platform_share
    on_platform[np.arange(N), rng.integers(0, P, size=N)] = True
    n_plat = on_platform.sum(axis=1)
    plat_list = np.argsort(~on_platform, axis=1, kind="stable")  # each row: the person's platforms first
    user_serial = np.stack([rng.permutation(N) for _ in range(P)], axis=1)  # distinct ids per platform
    activity = zipf_weights(N, spec.person_zipf)[rng.permutation(N)]

    # events
    E = spec.events
    person = _draw(rng, activity, E)
    platform = plat_list[person, (rng.random(E) * n_plat[person]).astype(np.int64)]
    own = rng.random(E) < spec.own_topic_share
    topic = np.where(
        own, pref[person, (rng.random(E) * n_pref[person]).astype(np.int64)], _draw(rng, topic_pop, E)
    )
    item = _item_in_group(rng, platform * T + topic, order, group_start, spec.item_zipf)
    etype = _draw(rng, np.array(EVENT_TYPE_SHARES), E).astype(np.int8)
    value = np.full(E, np.nan, dtype=np.float32)
    rating = etype == EVENT_TYPES.index("rating")
    value[rating] = rng.integers(1, 6, size=int(rating.sum()))

    # user ids: one string per (person, platform) that is used; the identity file links each to its person
    uid_of = np.full((N, P), -1, dtype=np.int64)
    users: list[str] = []
    link_platform: list[int] = []
    link_person: list[int] = []
    for p in range(P):
        who = np.flatnonzero(on_platform[:, p])
        uid_of[who, p] = np.arange(len(users), len(users) + len(who))
        users += [f"{platforms[p][0]}u{s:07d}" for s in user_serial[who, p]]
        link_platform += [p] * len(who)
        link_person += who.tolist()
    wl = Workload(
        name=spec.name,
        platforms=tuple(platforms),
        event_types=EVENT_TYPES,
        users=np.array(users),
        items=item_ids,
        persons=np.array([f"person-{k:07d}" for k in range(N)]),
        ev_platform=platform.astype(np.int8),
        ev_user=uid_of[person, platform].astype(np.int32),
        ev_item=item.astype(np.int32),
        ev_type=etype,
        ev_value=value,
        ev_person=person.astype(np.int32),
        link_platform=np.array(link_platform, dtype=np.int8),
        link_user=np.arange(len(users), dtype=np.int32),
        link_person=np.array(link_person, dtype=np.int32),
    )
    folder.mkdir(parents=True, exist_ok=True)
    _write_items(folder / "items.tsv.gz", item_ids, [platforms[p] for p in item_platform], titles, texts)
    _write_events(folder / "events.tsv.gz", wl)
    _write_identity(folder / "identity.tsv.gz", wl)
    wl.save(folder / "workload.npz")
    (folder / "README.md").write_text(_readme(spec))
    (folder / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return wl


def _draw(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices drawn by ``weights`` (inverse CDF: far faster than ``choice`` for many draws)."""
    cdf = np.cumsum(weights)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(weights) - 1)


def _item_in_group(
    rng: np.random.Generator, groups: np.ndarray, order: np.ndarray, group_start: np.ndarray, exponent: float
) -> np.ndarray:
    """For each event an item of its group, Zipf by rank (groups of one size share one CDF)."""
    sizes = np.diff(group_start)
    rank = np.empty(len(groups), dtype=np.int64)
    u = rng.random(len(groups))
    size_of_event = sizes[groups]
    for size in np.unique(size_of_event):
        at = size_of_event == size
        cdf = np.cumsum(zipf_weights(int(size), exponent))
        rank[at] = np.minimum(np.searchsorted(cdf, u[at] * cdf[-1], side="right"), size - 1)
    return order[group_start[groups] + rank]


def _item_texts(rng: np.random.Generator, item_topic: np.ndarray, vocab: list[np.ndarray]) -> tuple[list[str], list[str]]:
    """Short title and text per item: mostly its topic's words (texts stay ~80 characters: the worker
    encodes every item at start, on the CPU here)."""
    n = len(item_topic)
    adj = rng.integers(0, len(ADJECTIVES), size=(n, 2))
    own = rng.integers(0, 12, size=(n, 7))
    other = rng.integers(0, len(WORDS), size=n)
    titles, texts = [], []
    for k in range(n):
        w = vocab[item_topic[k]][own[k]]
        titles.append(f"{ADJECTIVES[adj[k, 0]].title()} {WORDS[w[0]]} {WORDS[w[1]]} {k % 997}")
        texts.append(
            f"{ADJECTIVES[adj[k, 1]]} {WORDS[w[2]]} with {WORDS[w[3]]} and {WORDS[w[4]]}, "
            f"{WORDS[w[5]]} {WORDS[w[6]]} {WORDS[other[k]]}"
        )
    return titles, texts


def _write_items(path: Path, ids: np.ndarray, platforms: list[str], titles: list[str], texts: list[str]) -> None:
    rows = "".join(f"{i}\t{p}\t{t}\t{x}\n" for i, p, t, x in zip(ids.tolist(), platforms, titles, texts))
    _write_gz(path, "item_id\tplatform\ttitle\ttext\n" + rows)


def _write_events(path: Path, wl: Workload) -> None:
    users, items, plats, types = wl.users.tolist(), wl.items.tolist(), list(wl.platforms), list(wl.event_types)
    values = [("" if v != v else f"{v:g}") for v in wl.ev_value.tolist()]  # v != v: NaN, no value
    lines = [
        f"{BASE_TS + k * TS_STEP_S:.2f}\t{users[u]}\t{plats[p]}\t{items[i]}\t{types[t]}\t{v}\thistory\n"
        for k, (u, p, i, t, v) in enumerate(
            zip(wl.ev_user.tolist(), wl.ev_platform.tolist(), wl.ev_item.tolist(), wl.ev_type.tolist(), values)
        )
    ]
    _write_gz(path, "ts\tuser_id\tplatform\titem_id\tevent_type\tvalue\trole\n" + "".join(lines))


def _write_identity(path: Path, wl: Workload) -> None:
    users, persons, plats = wl.users.tolist(), wl.persons.tolist(), list(wl.platforms)
    rows = "".join(
        f"{plats[p]}\t{users[u]}\t{persons[q]}\n"
        for p, u, q in zip(wl.link_platform.tolist(), wl.link_user.tolist(), wl.link_person.tolist())
    )
    _write_gz(path, "platform\tuser_id\tperson_id\n" + rows)


def _write_gz(path: Path, text: str) -> None:
    """gzip with no timestamp in the header: the same seed gives the same bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def _readme(spec: SyntheticSpec) -> str:
    return (
        f"# {spec.name}\n\nSynthetic benchmark workload generated by `stream/bench/synthetic.py` "
        "(deterministic by seed; regenerate rather than copy).\n\n"
        f"```\n{json.dumps(asdict(spec), indent=2)}\n```\n\n"
        "Files: items.tsv.gz, events.tsv.gz (dataset format, all events `history`), identity.tsv.gz "
        "(platform, user_id, person_id), workload.npz (the events as arrays, for the bench publisher).\n"
    )

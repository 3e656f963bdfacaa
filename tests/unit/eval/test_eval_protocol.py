"""The replay protocol on a tiny synthetic dataset: rank before learn, exclusions, report shape."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from fusionrec.config import Config, WorkerConfig
from fusionrec.contracts import BehaviorEvent
from fusionrec.core import Recommender
from fusionrec.evaluation import EvalOptions, evaluate
from fusionrec.evaluation.baselines import CoOccurrence, Popularity, TextMean
from fusionrec.evaluation.protocol.replay import load_dataset, replay
from fusionrec.dataset import read_items
from fakes import HashEncoder
from index.faiss_index import ItemIndex

DIM = 16
T0 = 1_600_000_000


def FakeEncoder() -> HashEncoder:  # noqa: N802  (reads like the class it stands for)
    return HashEncoder(DIM, "fake-sha256-16")


def write_dataset(folder: Path, n_users: int = 12) -> Path:
    """Two platforms; each user: 5 history events (both platforms), then 2 targets at one ts."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    items = [(f"{p[0]}{i}", p, f"{p} item {i}", f"text {i % 4}") for p in ("arts", "office") for i in range(30)]
    with gzip.open(folder / "items.tsv.gz", "wt", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["item_id", "platform", "title", "text"])
        w.writerows(items)
    rows = []
    for u in range(n_users):
        picks = rng.choice(30, size=7, replace=False)
        for j, i in enumerate(picks[:5]):
            p = "arts" if j % 2 == 0 else "office"
            rows.append((T0 + u * 10 + j, f"user{u}", p, f"{p[0]}{i}", "review", "", "history"))
        ts = T0 + u * 10 + 5
        rows.append((ts, f"user{u}", "arts", f"a{picks[5]}", "review", "", "target"))
        rows.append((ts, f"user{u}", "office", f"o{picks[6]}", "review", "", "target"))
        if u % 3 == 0:  # a second same-platform target in the same group
            rows.append((ts, f"user{u}", "arts", f"a{(picks[5] + 1) % 30}", "review", "", "target"))
    rows.sort(key=lambda r: r[0])
    with gzip.open(folder / "events.tsv.gz", "wt", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["ts", "user_id", "platform", "item_id", "event_type", "value", "role"])
        w.writerows(rows)
    return folder


def make_rec(top_k: int = 10) -> Recommender:
    cfg = Config(platforms=("arts", "office"), worker=WorkerConfig(top_k=top_k))
    return Recommender(cfg, FakeEncoder(), ItemIndex(DIM, device="cpu"))


class Spy:
    """Wraps Recommender.process to record every learned event id, and checks every ranking."""

    def __init__(self, rec: Recommender) -> None:
        self.rec = rec
        self.learned: set[str] = set()
        self.ranked: set[str] = set()
        inner = rec.process

        def process(events, load, save, **kw):  # type: ignore[no-untyped-def]
            for e in events:
                self.learned.add(e.event_id)
            return inner(events, load, save, **kw)

        rec.process = process  # type: ignore[method-assign]

    def on_rank(self, pairs: list[tuple[str, BehaviorEvent]]) -> None:
        for _, e in pairs:
            assert e.event_id not in self.learned, "a target was learned before it was ranked"
            self.ranked.add(e.event_id)


def test_targets_are_ranked_before_they_are_learned_and_groups_together(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "tiny")
    rec = make_rec()
    rec.apply_items(list(read_items(folder)))
    spy = Spy(rec)
    events = load_dataset(folder, None)
    result = replay(rec, events, [Popularity(rec.learner.catalog)], on_rank=spy.on_rank)
    targets = {de.event.event_id for de in events if de.role == "target"}
    assert spy.ranked == targets  # every target ranked, each before it (or its group mates) was learned
    assert targets <= spy.learned  # ...and learned afterwards
    assert result.targets == len(targets)
    assert result.slices["overall"]["model"].n == len(targets)
    assert result.slices["cross_platform"]["model"].n == len(targets)  # everyone has both platforms


def test_consumed_items_are_never_ranked(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "tiny")
    rec = make_rec()
    rec.apply_items(list(read_items(folder)))
    events = load_dataset(folder, None)
    history: dict[str, set[str]] = {}
    for de in events:
        if de.role == "history":
            history.setdefault(de.event.user_id, set()).add(de.event.item_id)
    seen: list[tuple[str, list[str]]] = []
    cat = rec.learner.catalog
    baselines = [Popularity(cat), CoOccurrence(cat), TextMean(cat)]
    for b in baselines:
        inner = b.rank

        def rank(requests, k, inner=inner):  # type: ignore[no-untyped-def]
            out = inner(requests, k)
            seen.extend((r.person, items) for r, items in zip(requests, out))
            return out

        b.rank = rank  # type: ignore[method-assign]
    inner_rank = rec.rank_requests

    def rank_requests(requests, k=None):  # type: ignore[no-untyped-def]
        out = inner_rank(requests, k)
        for r, items in zip(requests, out):
            assert not {i for i, _ in items} & r.consumed
        return out

    rec.rank_requests = rank_requests  # type: ignore[method-assign]
    replay(rec, events, baselines)
    assert seen
    for person, items in seen:
        user = person.split(":", 1)[1]
        assert not set(items) & history[user], "a baseline ranked an already-consumed item"


def test_group_mates_do_not_count_against_each_other(tmp_path: Path) -> None:
    """Two same-platform targets of one group: each is scored with the other removed from the list."""
    from fusionrec.evaluation.metrics import MetricSet

    ms = MetricSet()
    ranked = ["b", "a"]  # the group is {a, b}; for target a, b is removed: a is at rank 1
    ms.add([i for i in ranked if i == "a" or i not in {"a", "b"}], {"a"})
    assert ms.mean()["ndcg@10"] == 1.0


def test_evaluate_report_shape(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "tiny")
    report = evaluate(make_rec().cfg, folder, EvalOptions(sasrec_epochs=1), recommender=make_rec())
    metrics = {"recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10", "diversity@10", "novelty@10"}
    assert report["targets"] == sum(1 for de in load_dataset(folder, None) if de.role == "target")
    assert set(report["model"]) == metrics
    assert set(report["baselines"]) == {"popularity", "cooccurrence", "text_mean", "sasrec"}
    for row in report["baselines"].values():
        assert set(row) == metrics
    for name in ("cross_platform", "cold_items"):
        assert set(report["slices"][name]["model"]) == metrics
    assert set(report["slices"]["per_platform"]) == {"arts", "office"}
    for row in report["slices"]["per_platform"].values():
        assert set(row["baselines"]) == {"popularity", "cooccurrence", "text_mean", "sasrec"}
        assert set(row["model"]) == metrics
    assert 0.0 < report["model"]["coverage@10"] <= 1.0
    assert report["info"]["policy"]["name"] == "epsilon_greedy"
    assert report["info"]["sasrec_train_seconds"] >= 0


def test_limit_users(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "tiny")
    events = load_dataset(folder, 3)
    assert len({de.event.user_id for de in events}) == 3

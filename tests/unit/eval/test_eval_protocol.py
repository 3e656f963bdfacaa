"""The replay protocol on a tiny synthetic dataset: rank before learn, exclusions, report shape."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from fakes import build_core
from fusionrec.contracts import BehaviorEvent
from fusionrec.core import Recommender
from fusionrec.dataset import read_items
from fusionrec.evaluation import EvalOptions, evaluate
from fusionrec.evaluation.baselines import CoOccurrence, Popularity, TextMean
from fusionrec.evaluation.protocol import replay as replay_module
from fusionrec.evaluation.protocol.replay import load_dataset, replay

DIM = 16
T0 = 1_600_000_000


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
    """The core with an empty catalog (the dataset brings its items)."""
    return build_core(("arts", "office"), items=[], top_k=top_k, dim=DIM)


class Spy:
    """Wraps Recommender.process to record every learned event id, and checks every ranking."""

    def __init__(self, rec: Recommender) -> None:
        self.rec = rec
        self.learned: set[str] = set()
        self.ranked: set[str] = set()
        self.batches: list[tuple[int, bool]] = []  # (events, ranked) of every process call
        inner = rec.process

        def process(events, states, **kw):  # type: ignore[no-untyped-def]
            for e in events:
                self.learned.add(e.event_id)
            self.batches.append((len(events), kw.get("rank", True)))
            return inner(events, states, **kw)

        rec.process = process  # type: ignore[method-assign]

    def on_rank(self, pairs: list[tuple[str, BehaviorEvent]]) -> None:
        for _, e in pairs:
            assert e.event_id not in self.learned, "a target was learned before it was ranked"
            self.ranked.add(e.event_id)


def test_targets_are_ranked_before_they_are_learned_and_groups_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dataset(tmp_path / "tiny")
    rec = make_rec()
    rec.apply_items(list(read_items(folder)))
    spy = Spy(rec)
    events = load_dataset(folder, None)
    monkeypatch.setattr(replay_module, "LEARN_BATCH", 3)
    result = replay(rec, events, [Popularity(rec.store)], on_rank=spy.on_rank)
    # everything is learned in micro-batches of at most LEARN_BATCH events, without ranking
    assert max(n for n, _ in spy.batches) == 3 and not any(ranked for _, ranked in spy.batches)
    assert sum(n for n, _ in spy.batches) == len(events)
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
    cat = rec.store
    baselines = [Popularity(cat), CoOccurrence(cat), TextMean(cat)]
    for b in baselines:
        inner = b.rank

        def rank(requests, k, inner=inner):  # type: ignore[no-untyped-def]
            out = inner(requests, k)
            seen.extend((r.person, items) for r, items in zip(requests, out))
            return out

        b.rank = rank  # type: ignore[method-assign]
    inner_rank = rec.rank_ids
    model: list[tuple[str, list[str]]] = []

    def rank_ids(requests, k=None):  # type: ignore[no-untyped-def]
        out = inner_rank(requests, k)
        for n, (person, items) in enumerate(zip(requests.person, out)):
            platform = ("arts", "office")[int(requests.platform[n])]
            ids = rec.store.platforms[platform].ids
            consumed = {ids[r] for r in requests.consumed[n].tolist()}
            assert not set(items) & consumed
            model.append((person, items))
        return out

    rec.rank_ids = rank_ids  # type: ignore[method-assign]
    replay(rec, events, baselines)
    assert seen and model
    for person, items in seen:
        user = person.split(":", 1)[1]
        assert not set(items) & history[user], "a baseline ranked an already-consumed item"
    for person, items in model:
        user = person.split(":", 1)[1]
        assert items and not set(items) & history[user], "the model ranked an already-consumed item"


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
    assert report["info"]["exact_precision"] in ("float32", "bfloat16", "int8")  # as the core resolved "auto"


def test_evaluate_needs_the_recommender(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "tiny")
    with pytest.raises(ValueError, match="recommender"):
        evaluate(make_rec().cfg, folder, EvalOptions(sasrec=False))


def test_limit_users(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "tiny")
    events = load_dataset(folder, 3)
    assert len({de.event.user_id for de in events}) == 3


def test_the_streaming_sequence_model_is_trained_on_the_past_and_served_from_the_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--sequence-model`` under the streaming protocol: at the cut, the network is trained on the
    positive events before it (every platform, each person's journey) and installed; nothing after the
    cut was learned by then, and every ranking after it has the network's queries."""
    import fusionrec.evaluation.sasrec as sasrec
    from fusionrec.config import Config

    folder = write_dataset(tmp_path / "tiny")
    rec = make_rec()
    spy = Spy(rec)
    fitted: list[list[list[str]]] = []
    learned_at_install: list[int] = []
    inner_fit, inner_install = sasrec.SASRecBaseline.fit, rec.install_sequence_model

    def spy_fit(self: object, sequences: list[list[str]]) -> float:
        fitted.append([list(s) for s in sequences])
        return inner_fit(self, sequences)  # type: ignore[arg-type]

    def spy_install(model: object) -> None:
        learned_at_install.append(len(spy.learned))
        inner_install(model)  # type: ignore[arg-type]

    monkeypatch.setattr(sasrec.SASRecBaseline, "fit", spy_fit)
    rec.install_sequence_model = spy_install  # type: ignore[method-assign]
    queries: list[bool] = []
    inner_rank = rec.rank_ids

    def rank_ids(requests, k=None):  # type: ignore[no-untyped-def]
        queries.append(requests.seq_query is not None)
        return inner_rank(requests, k)

    rec.rank_ids = rank_ids  # type: ignore[method-assign]
    params = (("epochs", 1), ("threads", 1), ("dim", 8), ("heads", 2))
    options = EvalOptions(baselines=False, sequence_model=True, sequence_fraction=0.5, sequence_params=params)
    report = evaluate(Config(platforms=("arts", "office")), folder, options, recommender=rec)
    events = load_dataset(folder, None)
    cut = len(events) // 2
    assert learned_at_install == [cut]  # everything before the cut learned, nothing after it
    journeys: dict[str, list[str]] = {}
    for de in events[:cut]:
        journeys.setdefault(de.event.user_id, []).append(de.event.item_id)
    assert sorted(fitted[0]) == sorted(journeys.values())
    info = report["info"]["sequence_model"]
    assert info["trained_on_events"] == cut and info["config"]["item_text"] == "only" and info["config"]["dim"] == 8
    assert queries and not queries[0] and queries[-1]  # ranked without the network before the cut, with it after
    assert rec.sequence_model is not None


def test_streaming_fine_tuning_rounds_train_the_served_network_on_the_people_seen_since_the_last_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--sequence-finetune-every N``: after the cut, every N learned events the served network is
    trained further (from its own weights) on the stored journeys of the people those events changed."""
    from dataclasses import replace

    import fusionrec.evaluation.sasrec as sasrec
    from fusionrec.config import Config
    from fusionrec.fusion import SEQUENCE_LENGTH
    from fusionrec.state import remember

    folder = write_dataset(tmp_path / "tiny", n_users=24)
    base = Config(platforms=("arts", "office"))
    cfg = base.replace(model=replace(base.model, sequence_finetune_min_people=1, sequence_finetune_epochs=1))
    rec = build_core(("arts", "office"), items=[], dim=DIM, cfg=cfg)
    learned: list[BehaviorEvent] = []
    inner_process = rec.process

    def process(events, states, **kw):  # type: ignore[no-untyped-def]
        learned.extend(events)  # the replay only learns through process (ranking goes through requests_for)
        return inner_process(events, states, **kw)

    rec.process = process  # type: ignore[method-assign]
    fits: list[tuple[int, list[list[str]], bool]] = []  # (events learned by then, journeys, fine-tuning)
    inner_fit = sasrec.SASRecBaseline.fit

    def spy_fit(self: sasrec.SASRecBaseline, sequences: list[list[str]]) -> float:
        fits.append((len(learned), [list(s) for s in sequences], self.init is not None))
        return inner_fit(self, sequences)

    monkeypatch.setattr(sasrec.SASRecBaseline, "fit", spy_fit)
    params = (("epochs", 1), ("threads", 1), ("dim", 8), ("heads", 2))
    options = EvalOptions(baselines=False, sequence_model=True, sequence_params=params, sequence_finetune_every=20)
    report = evaluate(cfg, folder, options, recommender=rec)
    rounds = report["info"]["sequence_finetune"]["rounds"]
    assert not fits[0][2] and len(fits) - 1 == len(rounds) >= 2 and all(f for _, _, f in fits[1:])
    previous = fits[0][0]
    for n, journeys, _ in fits[1:]:
        assert n - previous >= 20
        expected = []
        for user in {e.user_id for e in learned[previous:n]}:
            seq: list[str] = []
            for e in learned[:n]:
                if e.user_id == user:
                    remember(seq, e.item_id, SEQUENCE_LENGTH)  # type: ignore[arg-type]
            if len(seq) >= 2:
                expected.append(seq)
        assert sorted(journeys) == sorted(expected)
        previous = n
    assert all(r["people"] > 0 and "served" in r for r in rounds)

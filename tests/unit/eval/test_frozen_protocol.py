"""The frozen (leave-one-out) protocol: fit on the history only, rank every target before anything is
learned from one, consumed items excluded unless kept, the validation split, the report and the CLI."""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fusionrec.config import Config
from fusionrec.dataset import DatasetEvent, read_events, read_items
from fusionrec.evaluation.baselines import BaselineRequest, Popularity
from fusionrec.evaluation.protocol.frozen import (
    BaselineMethod,
    FrozenOptions,
    History,
    build_catalog,
    evaluate_frozen,
    format_frozen,
    run_frozen,
    split_events,
)
from fusionrec.evaluation.sasrec import SASRecConfig
from fakes import HashEncoder
from stream.cli import main

T0 = 1_600_000_000.0
ITEMS = [(i, "shop", f"item {i}", f"text {i}") for i in "abcdef"] + [("x", "news", "news x", "")]


def write(
    folder: Path, events: Sequence[tuple[float, str, str, str, str]], items: Sequence[tuple[str, ...]] = ITEMS
) -> Path:
    """A dataset folder; events are (ts, user, platform, item, role)."""
    folder.mkdir()
    with gzip.open(folder / "items.tsv.gz", "wt", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["item_id", "platform", "title", "text"])
        w.writerows(items)
    with gzip.open(folder / "events.tsv.gz", "wt", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["ts", "user_id", "platform", "item_id", "event_type", "value", "role"])
        w.writerows((ts, u, p, i, "review", "", role) for ts, u, p, i, role in sorted(events, key=lambda e: e[0]))
    return folder


# Popularity in the history: a 3, b 2, c 1, x 1 (news); d, e, f never.
HAND = [
    (T0 + 0, "u1", "shop", "a", "history"),
    (T0 + 1, "u1", "shop", "b", "history"),
    (T0 + 2, "u2", "shop", "a", "history"),
    (T0 + 3, "u2", "shop", "c", "history"),
    (T0 + 4, "u3", "shop", "a", "history"),
    (T0 + 5, "u3", "shop", "b", "history"),
    (T0 + 6, "u3", "news", "x", "history"),
    (T0 + 10, "u1", "shop", "c", "target"),  # u1 consumed a, b: c is first once they are excluded
    (T0 + 11, "u2", "shop", "e", "target"),  # a cold item (no history); u1's target must not lift it
    (T0 + 11, "u2", "shop", "d", "target"),  # same group as e: neither counts against the other
    (T0 + 12, "u3", "shop", "e", "target"),
]


def catalog_and_split(folder: Path, split: str = "test") -> tuple[Any, Any]:
    catalog = build_catalog(list(read_items(folder)), HashEncoder(8, "fake-8"))
    return catalog, split_events(list(read_events(folder)), split)


def ndcg(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


class Spy:
    """A method that records what it was fitted on and what it was asked to rank."""

    name = "spy"

    def __init__(self, inner: BaselineMethod, log: list[str]) -> None:
        self.inner, self.log = inner, log
        self.fitted: list[str] = []
        self.requests: list[BaselineRequest] = []

    def fit(self, history: History) -> dict[str, Any]:
        self.log.append("fit")
        self.fitted = [e.event_id for e in history.events]
        return self.inner.fit(history)

    def rank(self, requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        self.log.append("rank")
        self.requests = list(requests)
        return self.inner.rank(requests, k)


def test_hand_checked_popularity_with_consumed_excluded_and_kept(tmp_path: Path) -> None:
    catalog, split = catalog_and_split(write(tmp_path / "d", HAND))
    positive = lambda e: True  # noqa: E731
    excluded = run_frozen(catalog, split, [BaselineMethod(Popularity(catalog))], positive=positive)
    kept = run_frozen(catalog, split, [BaselineMethod(Popularity(catalog))], positive=positive, keep_consumed=True)
    # excluded: u1 [c, d, e, f] -> c at 1; u2 [b, d, e, f] -> d at 2, e at 2 (d removed); u3 [c, d, e, f] -> e at 3
    ms = excluded.slices["overall"]["popularity"].mean()
    assert ms["ndcg@10"] == pytest.approx((1.0 + ndcg(2) + ndcg(2) + ndcg(3)) / 4)
    assert ms["recall@10"] == 1.0
    # kept: u1 [a, b, c, ...] -> c at 3; u2 [a, b, c, d, e] -> d at 4, e at 4; u3 -> e at 5
    mk = kept.slices["overall"]["popularity"].mean()
    assert mk["ndcg@10"] == pytest.approx((ndcg(3) + ndcg(4) + ndcg(4) + ndcg(5)) / 4)
    assert excluded.targets == 4
    assert excluded.slices["cold_items"]["popularity"].n == 3  # d, e, e: nobody had them in the history
    assert excluded.slices["cross_platform"]["popularity"].n == 1  # u3 has news history


def test_everything_is_fitted_before_any_ranking_and_no_target_is_learned(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", HAND)
    catalog, split = catalog_and_split(folder)
    log: list[str] = []
    spies = [Spy(BaselineMethod(Popularity(catalog)), log), Spy(BaselineMethod(Popularity(catalog)), log)]
    run_frozen(catalog, split, spies, positive=lambda e: True)
    assert log == ["fit", "rank", "fit", "rank"]
    targets = {de.event.event_id for de in read_events(folder) if de.role == "target"}
    for spy in spies:
        assert spy.fitted and not set(spy.fitted) & targets
        # one request per (person, platform) group, consumed = the person's history items
        assert {(r.person, r.platform, r.consumed) for r in spy.requests} == {
            ("u:u1", "shop", frozenset("ab")),
            ("u:u2", "shop", frozenset("ac")),
            ("u:u3", "shop", frozenset({"a", "b", "x"})),
        }


def test_valid_split_uses_the_last_history_item_and_drops_targets(tmp_path: Path) -> None:
    events = list(read_events(write(tmp_path / "d", HAND)))
    split = split_events(events, "valid")
    assert [(de.event.user_id, de.event.item_id, de.role) for de in split.targets] == [
        ("u1", "b", "target"), ("u2", "c", "target"), ("u3", "x", "target"),
    ]  # fmt: skip
    history = [(de.event.user_id, de.event.item_id) for de in split.history]
    assert history == [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u3", "b")]
    assert all(de.role == "history" for de in split.history)
    test = split_events(events, "test")
    assert len(test.targets) == 4 and len(test.history) == 7


def test_ties_keep_the_file_order_for_the_last_history_item() -> None:
    from fusionrec.contracts import BehaviorEvent

    def ev(n: int, item: str) -> DatasetEvent:
        return DatasetEvent(BehaviorEvent(f"e{n}", T0, "shop", "u", item, "review"), "history")

    split = split_events([ev(1, "a"), ev(2, "b"), ev(3, "c")], "valid")
    assert [de.event.item_id for de in split.targets] == ["c"]


def test_evaluate_frozen_report(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", HAND)
    cfg = Config(platforms=("shop", "news"))
    sas = SASRecConfig(dim=8, blocks=1, heads=1, epochs=2, threads=1)
    report = evaluate_frozen(cfg, folder, FrozenOptions(sasrec_config=sas), encoder=HashEncoder(8, "fake-8"))
    assert report["protocol"] == {"name": "frozen", "split": "test", "keep_consumed": False, "limit_users": None}
    assert report["model"] is None and report["info"]["model"].startswith("not run")
    assert set(report["baselines"]) == {"popularity", "cooccurrence", "text_mean", "sasrec"}
    assert report["targets"] == 4
    expected = (1.0 + ndcg(2) + ndcg(2) + ndcg(3)) / 4
    assert report["baselines"]["popularity"]["ndcg@10"] == pytest.approx(expected, abs=1e-5)
    assert report["info"]["methods"]["sasrec"]["epochs"] >= 1
    assert set(report["slices"]["per_platform"]) == {"shop"}
    assert "sasrec" in format_frozen(report)


def test_cli_frozen_valid_and_stream_only_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write(tmp_path / "d", HAND)
    seen: dict[str, Any] = {}

    def fake(cfg: Config, dataset: Any, options: FrozenOptions, **kw: Any) -> dict[str, Any]:
        seen["options"], seen["recommender"] = options, kw.get("recommender")
        return evaluate_frozen(cfg, dataset, options, encoder=HashEncoder(8, "fake-8"), **kw)

    def fake_core(cfg: Config, **kw: Any) -> Any:  # the composition root, with the hash encoder
        from fakes import build_core

        return build_core(cfg.platforms, items=[], dim=8, cfg=cfg)

    monkeypatch.setattr("fusionrec.evaluation.protocol.frozen.evaluate_frozen", fake)
    monkeypatch.setattr("stream.compose.build_recommender", fake_core)
    argv = ["eval", "--dataset", str(folder), "--protocol", "frozen", "--split", "valid", "--keep-consumed",
            "--baselines", "popularity,sasrec", "--sasrec-param", "dropout=0.2", "--sasrec-param", "threads=1",
            "--sasrec-epochs", "1", "--baseline-param", "cooccurrence_history=5",
            "--baseline-param", "popularity_half_life_days=inf", "--json", str(tmp_path / "r.json")]  # fmt: skip
    assert main(argv) == 0
    options = seen["options"]
    assert (options.split, options.keep_consumed, options.baselines) == ("valid", True, ("popularity", "sasrec"))
    assert (options.sasrec_config.dropout, options.sasrec_config.epochs, options.sasrec_config.threads) == (0.2, 1, 1)
    assert (options.cooccurrence_history, options.popularity_half_life_days) == (5, float("inf"))
    assert seen["options"].model and seen["options"].policy is None and seen["recommender"] is not None
    out = capsys.readouterr().out
    assert "split valid" in out and "| model |" in out
    argv_no_model = ["eval", "--dataset", str(folder), "--protocol", "frozen", "--no-model", "--baselines", "popularity",
                     "--policy", "none"]  # fmt: skip
    assert main(argv_no_model) == 0
    assert not seen["options"].model and seen["options"].policy == "none" and seen["recommender"] is None
    assert "| model |" not in capsys.readouterr().out
    assert main(["eval", "--dataset", str(folder), "--no-model"]) == 2  # frozen only
    assert main(["eval", "--dataset", str(folder), "--split", "valid"]) == 2  # frozen-only flag on the stream protocol
    assert main(["eval", "--dataset", str(folder), "--protocol", "frozen", "--sasrec-param", "nope=1"]) == 2
    bad = ["eval", "--dataset", str(folder), "--protocol", "frozen", "--baseline-param", "cooccurrence_history=x"]
    assert main(bad) == 2
    with_sequence = ["eval", "--dataset", str(folder), "--protocol", "frozen", "--baselines", "popularity", "--sequence-model",
                     "--sequence-param", "dropout=0.3", "--sequence-param", "epochs=1", "--sequence-param", "threads=1"]  # fmt: skip
    assert main(with_sequence) == 0
    seq = seen["options"].sequence_config
    assert seen["options"].sequence_model and (seq.item_text, seq.max_len, seq.dropout, seq.epochs) == ("only", 20, 0.3, 1)
    assert main(["eval", "--dataset", str(folder), "--protocol", "frozen", "--sequence-param", "dropout=0.3"]) == 2
    assert main(["eval", "--dataset", str(folder), "--refit-epochs", "2"]) == 2  # frozen only
    assert main(["eval", "--dataset", str(folder), "--sequence-param", "dropout=0.3"]) == 2  # needs --sequence-model


def test_baseline_params_reach_the_baselines(tmp_path: Path) -> None:
    from fusionrec.evaluation.protocol.frozen import default_methods

    catalog, _ = catalog_and_split(write(tmp_path / "d", HAND))
    options = FrozenOptions(
        popularity_half_life_days=7.0, cooccurrence_history=3, baselines=("popularity", "cooccurrence")
    )
    pop, cooc = (factory(catalog) for factory in default_methods(options))
    assert pop.baseline.half_life_s == 7 * 86400.0  # type: ignore[attr-defined]
    assert cooc.baseline.HISTORY == 3  # type: ignore[attr-defined]


# --- the model (the processing core) under the frozen protocol ----------------------------------------


def core_with(folder: Path) -> Any:
    """The core as the tests build it (hash encoder, real index), holding the dataset's items."""
    from fakes import build_core

    rec = build_core(("shop", "news"), items=[], dim=8)
    rec.apply_items(list(read_items(folder)))
    return rec


def history_of(split: Any) -> History:
    from fusionrec.evaluation.protocol.frozen import person_of_user

    events = [de.event for de in split.history]
    return History(events, [person_of_user(e.user_id) for e in events], [True] * len(events))


def test_evaluate_frozen_runs_the_model_with_finite_metrics(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", HAND)
    cfg = Config(platforms=("shop", "news"))
    options = FrozenOptions(baselines=("popularity",))
    report = evaluate_frozen(cfg, folder, options, recommender=core_with(folder))
    row = report["model"]
    assert row is not None and "model" not in report["info"]
    assert set(row) >= {"ndcg@10", "recall@10"}
    assert all(math.isfinite(v) for v in row.values())
    assert 0.0 < row["recall@10"] <= 1.0  # 4 shop items left per person: every target is in its top 10
    assert report["slices"]["per_platform"]["shop"]["model"] is not None
    info = report["info"]["methods"]["model"]
    assert info["learned_events"] == 7 and info["policy"]["name"] == cfg.policy.name  # the config's, as the stream eval
    assert "model_consumed" not in report["info"]
    assert report["info"]["exact_precision"] in ("float32", "bfloat16", "int8")
    # popularity is unchanged by the model running first on the same catalog
    expected = (1.0 + ndcg(2) + ndcg(2) + ndcg(3)) / 4
    assert report["baselines"]["popularity"]["ndcg@10"] == pytest.approx(expected, abs=1e-5)
    text = format_frozen(report)
    assert "| model |" in text and "| popularity |" in text
    kept = evaluate_frozen(cfg, folder, replace_options(options, keep_consumed=True), recommender=core_with(folder))
    assert "still excludes" in kept["info"]["model_consumed"]
    skipped = evaluate_frozen(cfg, folder, replace_options(options, model=False), recommender=core_with(folder))
    assert skipped["model"] is None and skipped["info"]["model"].startswith("not run")
    assert "| model |" not in format_frozen(skipped)


def replace_options(options: FrozenOptions, **kw: Any) -> FrozenOptions:
    from dataclasses import replace

    return replace(options, **kw)


def test_the_model_learns_the_history_only_and_ranking_changes_nothing(tmp_path: Path) -> None:
    import copy

    from fusionrec.evaluation.protocol.frozen import ModelMethod

    folder = write(tmp_path / "d", HAND)
    rec = core_with(folder)
    split = split_events(list(read_events(folder)), "test")
    processed: list[str] = []
    inner = rec.process

    def spy(events: Sequence[Any], *a: Any, **kw: Any) -> Any:
        processed.extend(e.event_id for e in events)
        return inner(events, *a, **kw)

    rec.process = spy
    method = ModelMethod(rec, learn_batch=3, rank_batch=2)  # several micro-batches
    method.fit(history_of(split))
    assert processed == [de.event.event_id for de in split.history]  # all of it, in time order
    assert rec.learner.unpublished == 0 and not rec.learner.stats.unapplied  # published before ranking
    requests = [
        BaselineRequest("u:u1", "shop", T0 + 10, frozenset()),
        BaselineRequest("u:u2", "shop", T0 + 11, frozenset()),
        BaselineRequest("u:u3", "shop", T0 + 12, frozenset()),
    ]
    states = copy.deepcopy(dict(method.states))
    version, learned = rec.learner.published_version, rec.learner.learned
    weights = {p: w.copy() for p, w in rec.learner.weights.items()}
    first = method.rank(requests, 10)
    second = method.rank(requests, 10)
    assert first == second and all(first)
    method.rank_batch = len(requests)
    assert method.rank(requests, 10) == first  # the same in one batch as in several
    assert processed == [de.event.event_id for de in split.history]  # no target was processed
    assert dict(method.states) == states
    assert (rec.learner.published_version, rec.learner.learned) == (version, learned)
    assert set(weights) == set(rec.learner.weights)
    assert all((weights[p] == rec.learner.weights[p]).all() for p in weights)


def test_the_model_excludes_a_target_the_person_had_in_the_history(tmp_path: Path) -> None:
    from fusionrec.evaluation.protocol.frozen import ModelMethod

    # u1 takes a again (a re-consumption target): the model never lists it, even with keep_consumed
    events = [*HAND[:7], (T0 + 10, "u1", "shop", "a", "target"), (T0 + 12, "u3", "shop", "e", "target")]
    folder = write(tmp_path / "d", events)
    rec = core_with(folder)
    split = split_events(list(read_events(folder)), "test")
    lists: dict[str, list[str]] = {}
    method = ModelMethod(rec)
    rank = method.rank

    def spy(requests: Sequence[BaselineRequest], k: int) -> list[list[str]]:
        out = rank(requests, k)
        lists.update({r.person: ranked for r, ranked in zip(requests, out)})
        return out

    method.rank = spy  # type: ignore[method-assign]
    result = run_frozen(rec.store, split, [method], positive=lambda e: True, keep_consumed=True)
    assert lists["u:u1"] and not {"a", "b"} & set(lists["u:u1"])  # u1's history items
    assert lists["u:u3"] and not {"a", "b"} & set(lists["u:u3"])
    by_platform = result.slices["platform:shop"]["model"]
    assert by_platform.n == 2
    assert result.slices["overall"]["model"].mean()["recall@10"] == pytest.approx(0.5)  # u1's a is a miss


def test_the_sequence_model_is_trained_on_the_first_part_of_the_history_and_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import fusionrec.evaluation.sasrec as sasrec
    from fusionrec.evaluation.protocol.frozen import ModelMethod

    folder = write(tmp_path / "d", HAND)
    rec = core_with(folder)
    history = history_of(split_events(list(read_events(folder)), "test"))
    fitted: list[list[list[str]]] = []
    processed_before_fit: list[int] = []
    inner_process, inner_fit = rec.process, sasrec.SASRecBaseline.fit

    def count(events: Sequence[Any], *a: Any, **kw: Any) -> Any:
        if not fitted:
            processed_before_fit.append(len(events))
        return inner_process(events, *a, **kw)

    def spy_fit(self: Any, sequences: Any) -> float:
        fitted.append([list(s) for s in sequences])
        return inner_fit(self, sequences)

    rec.process = count
    monkeypatch.setattr(sasrec.SASRecBaseline, "fit", spy_fit)
    net = sasrec.SASRecConfig(dim=8, heads=2, blocks=1, max_len=20, item_text="only", epochs=2, threads=1)
    method = ModelMethod(rec, sequence=net, sequence_fraction=0.5)
    info = method.fit(history)
    cut = len(history.events) // 2
    assert sum(processed_before_fit) == cut  # the core learned the first part before the network was trained
    first_part: dict[str, list[str]] = {}
    for e, person in zip(history.events[:cut], history.persons[:cut]):
        first_part.setdefault(person, []).append(e.item_id)
    assert sorted(fitted[0]) == sorted(first_part.values())  # ...and the network saw that part only
    assert info["sequence_model"]["trained_on_events"] == cut
    # then it was fine-tuned on the whole history (the targets served by that one, version + 1)
    assert len(fitted) == 2 and sorted(fitted[1]) == sorted(history.sequences().values())
    assert rec.sequence_model is not None and rec.sequence_model.version == 1
    assert info["sequence_model_refresh"]["trained_on_events"] == len(history.events)
    reqs = rec.requests_for(method.states, ["u:u1"], ["shop"], [T0 + 10])
    assert reqs.seq_query is not None and np.abs(reqs.seq_query).sum() > 0
    assert all(method.rank([BaselineRequest("u:u1", "shop", T0 + 10, frozenset())], 10))
    assert ModelMethod(core_with(folder)).fit(history)["sequence_model"] == "off"
    fitted.clear()
    stale = core_with(folder)
    assert ModelMethod(stale, sequence=net, sequence_fraction=0.5, sequence_refresh=False).fit(history)["sequence_model_refresh"] == "off"
    assert len(fitted) == 1 and stale.sequence_model is not None and stale.sequence_model.version == 0


def test_train_sequence_writes_a_model_the_composition_root_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from fusionrec.learner.sequence import SequenceModel

    folder = write(tmp_path / "d", HAND)
    built: list[Any] = []

    def fake_core(cfg: Config, **kw: Any) -> Any:  # the composition root, with the hash encoder
        from fakes import build_core

        built.append(build_core(cfg.platforms, items=[], dim=8, cfg=cfg))
        return built[-1]

    monkeypatch.setattr("stream.compose.build_recommender", fake_core)
    out = tmp_path / "seq.npz"
    argv = ["train-sequence", "--dataset", str(folder), "--out", str(out), "--sequence-param", "epochs=1",
            "--sequence-param", "threads=1", "--sequence-param", "dim=8", "--sequence-param", "heads=2"]  # fmt: skip
    assert main(argv) == 0
    model = SequenceModel.load(out)
    assert model.dim == 8 and set(model.platforms) == {"shop", "news"} and model.max_len == 20
    assert built[0].sequence_model is None  # it trains from the dataset, whatever the config serves
    monkeypatch.undo()
    from stream import compose

    monkeypatch.setattr(compose, "text_encoder", lambda cfg: HashEncoder(8, "fake-8"))
    cfg = Config(platforms=("shop", "news"))
    served = compose.build_recommender(cfg.replace(model=replace(cfg.model, sequence_model=str(out))))
    assert served.sequence_model is not None and served.sequence_model.platforms == ("shop", "news")
    assert compose.build_recommender(cfg).sequence_model is None


def test_held_back_is_each_persons_last_item_per_platform_after_an_earlier_one() -> None:
    from fusionrec.contracts import BehaviorEvent
    from fusionrec.evaluation.protocol.frozen import held_back

    rows = [("u1", "shop"), ("u1", "shop"), ("u2", "shop"), ("u1", "news"), ("u3", "shop"), ("u4", "shop"), ("u4", "news"), ("u2", "shop")]
    events = [BehaviorEvent(f"e{n}", u, p, f"i{n}", "review", None, T0 + n) for n, (u, p) in enumerate(rows)]
    positive = [True] * len(rows)
    positive[7] = False  # u2's last event is negative: its last positive one is the first, with nothing before
    history = History(events, [u for u, _ in rows], positive)
    # u1: shop 1 and news 3; u2: none; u3: one event; u4: its shop event is its first, its news one is held
    assert held_back(history) == {1, 3, 6}


def test_the_refit_ranks_the_held_back_items_from_the_state_before_them_and_keeps_their_events(tmp_path: Path) -> None:
    import numpy as np

    from fusionrec.evaluation.protocol.frozen import ModelMethod

    folder = write(tmp_path / "d", HAND)
    rec = core_with(folder)
    history = history_of(split_events(list(read_events(folder)), "test"))
    processed: list[str] = []
    refitted: list[Any] = []
    inner_process, inner_train_on = rec.process, rec.learner.train_on

    def spy_process(events: Sequence[Any], *a: Any, **kw: Any) -> Any:
        processed.extend(e.event_id for e in events)
        return inner_process(events, *a, **kw)

    def spy_train_on(examples: Any) -> int:
        refitted.append([(ex.platform, ex.row) for ex in examples])
        out = inner_train_on(examples)
        refitted.append({p: w.copy() for p, w in rec.learner.weights.items()})
        return out

    rec.process = spy_process
    rec.learner.train_on = spy_train_on
    info = ModelMethod(rec, refit_epochs=3).fit(history)
    held = [history.events[n].event_id for n in (1, 3, 5, 6)]  # u1's b, u2's c, u3's b and x
    assert processed[-4:] == held and sorted(processed) == sorted(e.event_id for e in history.events)
    assert info["refit"]["examples"] == 4 and info["refit"]["epochs"] == 3
    examples = [pair for step in refitted[0::2] for pair in step]
    store = rec.store
    assert sorted(set(examples)) == sorted({("shop", store.row_of("b")), ("shop", store.row_of("c")), ("news", store.row_of("x"))})
    assert len(examples) == 3 * 4  # every held-back item once per pass
    last = refitted[-1]
    from fusionrec.learner.model import INITIAL_WEIGHTS

    before = info["refit"]["weights_before"]
    moved = {p: not np.allclose(before.get(p, INITIAL_WEIGHTS), last[p], atol=1e-4) for p in last}
    assert moved["shop"]  # the refit changed the weights...
    assert all(np.array_equal(rec.learner.weights[p], last[p]) for p in last)  # ...and learning the held-back events did not
    assert ModelMethod(core_with(folder)).fit(history)["refit"] == "off"


@pytest.mark.parametrize("item_text", ["only", "add"])
def test_train_sequence_fine_tunes_a_served_model_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], item_text: str
) -> None:
    """With ``add`` the ID embeddings are carried row by row too (and still score: ``id_out``)."""
    import numpy as np

    from fusionrec.learner.sequence import SequenceModel

    folder = write(tmp_path / "d", HAND)

    def fake_core(cfg: Config, **kw: Any) -> Any:
        from fakes import build_core

        return build_core(cfg.platforms, items=[], dim=8, cfg=cfg)

    monkeypatch.setattr("stream.compose.build_recommender", fake_core)
    out = tmp_path / "seq.npz"
    net = ["--sequence-param", "threads=1", "--sequence-param", "dim=8", "--sequence-param", "heads=2", "--sequence-param", f"item_text={item_text}"]
    assert main(["train-sequence", "--dataset", str(folder), "--out", str(out), "--sequence-param", "epochs=2", *net]) == 0
    first = SequenceModel.load(out)
    assert first.version == 0
    # lr 0: the epoch cannot move the weights, so what is written is the model it started from
    argv = ["train-sequence", "--dataset", str(folder), "--out", str(out), "--init", str(out), "--sequence-param", "epochs=1",
            "--sequence-param", "lr=0", *net]  # fmt: skip
    assert main(argv) == 0
    again = SequenceModel.load(out)
    assert again.version == 1 and again.id_out == first.id_out == (item_text == "add")
    a, b = first.to_arrays(), again.to_arrays()
    assert ("item.weight" in a) == (item_text == "add")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    other = ["--sequence-param", "epochs=1", "--sequence-param", "threads=1", "--sequence-param", "dim=16", "--sequence-param", "heads=2",
             "--sequence-param", f"item_text={item_text}"]  # fmt: skip
    assert main(["train-sequence", "--dataset", str(folder), "--out", str(tmp_path / "x.npz"), "--init", str(out), *other]) != 0
    assert "does not fit this network" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()


def test_restricted_to_the_target_platform_the_network_learns_each_platforms_journey_apart(tmp_path: Path) -> None:
    """The fusion ablation: the sequence network's training journeys hold one platform each (it reads
    no more than that when it serves), in both protocols."""
    from fusionrec.evaluation.protocol.replay import positive_journeys

    folder = write(tmp_path / "d", HAND)
    history = history_of(split_events(list(read_events(folder)), "test"))
    assert history.sequences()["u:u3"] == ["a", "b", "x"]
    apart = history.sequences(per_platform=True)
    assert apart["u:u3/shop"] == ["a", "b"] and apart["u:u3/news"] == ["x"]
    events = list(read_events(folder))
    weights = Config().model.event_weights
    assert ["a", "b", "x", "e"] in positive_journeys(events, weights) and ["x"] not in positive_journeys(events, weights)
    assert ["x"] in positive_journeys(events, weights, per_platform=True) and ["a", "b", "e"] in positive_journeys(events, weights, per_platform=True)


def test_train_sequence_says_a_missing_gpu_before_it_encodes_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    folder = write(tmp_path / "d", HAND)
    built: list[Any] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("stream.compose.build_recommender", lambda cfg, **kw: built.append(cfg))
    assert main(["train-sequence", "--dataset", str(folder), "--out", str(tmp_path / "s.npz"), "--sequence-param", "device=cuda"]) != 0
    assert "torch sees no GPU" in capsys.readouterr().err and not built and not (tmp_path / "s.npz").exists()

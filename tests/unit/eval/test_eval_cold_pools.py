"""The cold-item slice's pools: the items of the target's platform nobody had interacted with at each
cold target, and the catalog items nobody ever interacts with (distractors), under both protocols."""

from __future__ import annotations

from pathlib import Path

from fusionrec.dataset import read_items
from fusionrec.evaluation.baselines import Popularity
from fusionrec.evaluation.cold import ColdPools, describe_pools
from fusionrec.evaluation.protocol.frozen import BaselineMethod, run_frozen
from fusionrec.evaluation.protocol.replay import load_dataset, replay
from test_eval_protocol import make_rec, write_dataset
from test_frozen_protocol import HAND, catalog_and_split, write


def test_pools_shrink_as_items_get_their_first_interaction() -> None:
    pools = ColdPools({"shop": 10, "news": 4})
    pools.at_cold_target("shop")
    assert pools.interacted("shop", "a") and pools.interacted("shop", "b") and not pools.interacted("shop", "a")
    pools.interacted("news", "x")
    pools.at_cold_target("shop")
    pools.at_cold_target("news")
    summary = pools.summary({"shop": 2, "news": 0})
    assert pools.pools == [10, 8, 3]
    assert summary["cold_targets"] == 3 and summary["pool_median"] == 8.0 and (summary["pool_min"], summary["pool_max"]) == (3, 10)
    assert summary["never_interacted"] == {"news": 0, "shop": 2} and not summary["optimistic"]
    assert "2 catalog items nobody ever interacts with" in describe_pools(summary)
    assert ColdPools({"shop": 3}).summary({"shop": 0})["optimistic"] is True
    assert describe_pools(ColdPools({"shop": 3}).summary({"shop": 0})) == ""  # no cold target: nothing to say


def test_frozen_pools_are_the_items_the_history_never_touched(tmp_path: Path) -> None:
    catalog, split = catalog_and_split(write(tmp_path / "d", HAND))
    result = run_frozen(catalog, split, [BaselineMethod(Popularity(catalog))], positive=lambda e: True)
    pools = result.cold_item_pools
    # shop has a-f; the history touched a, b, c: the cold targets (d and e of u2, e of u3) hide among 3
    assert pools["cold_targets"] == 3 == result.slices["cold_items"]["popularity"].n
    assert (pools["pool_min"], pools["pool_max"]) == (3, 3)
    # nobody ever touches f (d and e are targets); news has only x, which the history touched
    assert pools["never_interacted"] == {"news": 0, "shop": 1} and not pools["optimistic"]


def test_streaming_pools_follow_what_was_learned_before_each_cold_target(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "tiny")
    rec = make_rec()
    rec.apply_items(list(read_items(folder)))
    events = load_dataset(folder, None)
    result = replay(rec, events, [Popularity(rec.store)])
    # by hand: a run of consecutive targets is ranked before any of it is learned, history is learned first
    seen: set[str] = set()
    expected: list[int] = []
    run: list[str] = []
    for de in events:
        e = de.event
        if de.role == "history":
            seen.update(run)
            run = []
            seen.add(e.item_id)
            continue
        if e.item_id not in seen:
            expected.append(30 - sum(1 for i in seen if i[0] == e.platform[0]))
        run.append(e.item_id)
    pools = result.info["cold_item_pools"]
    assert pools["cold_targets"] == len(expected) == result.slices["cold_items"]["model"].n > 0
    assert (pools["pool_min"], pools["pool_max"]) == (min(expected), max(expected))
    assert pools["pool_mean"] == round(sum(expected) / len(expected), 1)
    everything = {de.event.item_id for de in events}
    assert sum(pools["never_interacted"].values()) == 60 - len(everything) > 0

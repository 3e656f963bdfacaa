"""Recommender.process with the shared hash encoder and the real candidate index (``fakes.build_core``).

Stateful rejections (duplicate, out_of_order, unknown_item), identity resolution, exclusion of consumed
items, platform filtering, explanations, batch == one-by-one, cross-platform influence, catalog changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoder.templates import item_text
from fakes import DictStates, HashEncoder, build_core, catalog
from fusionrec.config import Config, LimitsConfig, ModelConfig, WorkerConfig
from fusionrec.contracts import BehaviorEvent, IdentityLink, ItemDelete, ItemUpsert, RecItem, Recommendation, encode
from fusionrec.core import Identity, Outcome, Recommender, Rejection, plan_item_changes
from fusionrec.hashing import stable_hash as H
from fusionrec.state import PersonState
from index.candidates import set_search_threads
from stream.compose import index_factory

FUZZ_EXAMPLES = int(os.environ.get("FUSIONREC_FUZZ_EXAMPLES", "500"))
# each example builds a recommender and runs dozens of events: a fifth of the decoder fuzz volume
fuzz = settings(
    max_examples=max(10, FUZZ_EXAMPLES // 5),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DIM = 16
TOP_K = 5
N_ITEMS = 24
PLATFORMS = ("shop", "video")
T0 = 1_600_000_000.0
LATENESS = LimitsConfig().allowed_lateness_s
F16 = 2.0**-10
"""A profile keeps its direction in float16 (each component within 2^-11 relative), so a query made
from one item's vector scores within 2^-10 of the exact similarity."""


@pytest.fixture(scope="module", autouse=True)
def worker_faiss_settings() -> Iterator[None]:
    """Search the way the worker does (one thread); restored afterwards."""
    threads = faiss.omp_get_max_threads()
    set_search_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def make_recommender(top_k: int = TOP_K, **kwargs: object) -> Recommender:
    return build_core(PLATFORMS, items=catalog(PLATFORMS, N_ITEMS), top_k=top_k, dim=DIM, **kwargs)  # type: ignore[arg-type]


class Store(DictStates):
    """The person states, as packed bytes, recording who was written."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[str] = []

    def put(self, person: str, raw: bytes) -> None:
        self.saves.append(person)
        super().put(person, raw)

    def load(self, person: str) -> PersonState:
        state = self.state(person)
        assert state is not None, person
        return state


def ev(
    n: int | str,
    item: str,
    *,
    user: str = "u1",
    platform: str | None = None,
    ts: float | None = None,
    etype: str = "click",
    value: float | None = None,
    person_id: str | None = None,
) -> BehaviorEvent:
    platform = platform or {"s": "shop", "v": "video"}.get(item[0], "shop")
    return BehaviorEvent(
        event_id=f"e{n}",
        ts=T0 + (float(n) if ts is None else ts),
        platform=platform,
        user_id=user,
        item_id=item,
        event_type=etype,
        value=value,
        person_id=person_id,
    )


def run(rec: Recommender, store: Store, events: Sequence[BehaviorEvent]) -> tuple[list[Outcome], list[Rejection]]:
    return rec.process(list(events), store)


def recs(out: Outcome) -> tuple[RecItem, ...]:
    return out.rec_items()


def text_of(item: ItemUpsert) -> str:
    """The text the item encoder embeds for ``item``."""
    return item_text(item.title, item.text, item.platform, item.categories)


def reasons(rejections: list[Rejection]) -> list[str]:
    return [r.reason for r in rejections]


# --------------------------------------------------------------------------------------- basics


def test_one_click_ranks_items_like_it_on_its_platform() -> None:
    rec, store = make_recommender(), Store()
    outcomes, rejections = run(rec, store, [ev(1, "s3")])
    assert rejections == []
    (out,) = outcomes
    assert out.position == 0 and out.person_id == "shop:u1" and out.event.item_id == "s3"
    ids = [i.item_id for i in recs(out)]
    assert len(ids) == TOP_K and "s3" not in ids
    assert all(rec.store.platform_of(i) == "shop" and r.platform == "shop" for i, r in zip(ids, recs(out)))
    # one profile: the query is the clicked item's own direction, so scores are plain similarities
    s3 = rec.store.vectors_of(["s3"])[0]
    sims = {i: float(v @ s3) for i, v in zip(ids, rec.store.vectors_of(ids))}
    for item in recs(out):
        assert item.score == pytest.approx(sims[item.item_id], abs=F16)
        assert item.reason["kind"] == "similar_to_history" and item.reason["platform"] == "shop"
        assert item.reason["because_of"] == ["s3"]
    assert [i.score for i in recs(out)] == sorted((i.score for i in recs(out)), reverse=True)
    # and they are the best of the platform
    others = [f"s{i}" for i in range(N_ITEMS) if f"s{i}" != "s3"]
    best = sorted(others, key=lambda i: -float(rec.store.vectors_of([i])[0] @ s3))[:TOP_K]
    assert ids == best
    assert store.saves == ["shop:u1"]


def test_a_neutral_first_rating_falls_back_to_the_item_itself() -> None:
    rec, store = make_recommender(), Store()
    (out,), _ = run(rec, store, [ev(1, "v2", etype="rating", value=2.5)])
    assert len(out.items) == TOP_K and "v2" not in {i.item_id for i in recs(out)}
    for item in recs(out):
        assert item.reason == {"kind": "similar_to_last_item", "platform": "video", "because_of": ["v2"]}


def test_a_disliked_item_pushes_its_neighbours_down() -> None:
    rec = make_recommender(top_k=2 * N_ITEMS)
    (liked,), _ = run(rec, Store(), [ev(1, "s0", etype="rating", value=5.0)])
    (disliked,), _ = run(rec, Store(), [ev(1, "s0", etype="rating", value=0.5)])
    assert [i.item_id for i in recs(disliked)] == [i.item_id for i in reversed(recs(liked))]


def test_empty_batch() -> None:
    rec, store = make_recommender(), Store()
    assert run(rec, store, []) == ([], [])
    assert store.saves == []


def test_top_k_larger_than_the_platform_returns_every_unconsumed_item() -> None:
    rec, store = make_recommender(top_k=100), Store()
    (out,), _ = run(rec, store, [ev(1, "s0")])
    assert len(out.items) == N_ITEMS - 1
    outcomes, _ = run(rec, store, [ev(2, "s1")])
    assert {i.item_id for i in recs(outcomes[0])} == {f"s{i}" for i in range(2, N_ITEMS)}


def test_model_version_names_the_config_digest() -> None:
    rec = make_recommender()
    assert rec.model_version == f"fusion-v2-{rec.cfg.digest()}"
    assert Recommender(rec.cfg, rec.encoder, index_factory(rec.cfg), model_version="m7").model_version == "m7"


def test_rank_for_the_evaluator() -> None:
    rec, store = make_recommender(), Store()
    empty = rec.requests_for(store, ["p"], ["shop"], [T0])
    assert empty.known.tolist() == [False] and rec.rank_ids(empty) == [[]]  # no history, nothing to rank with
    rec.process([ev(1, "v1", person_id="p")], store, rank=False)
    video, cross = rec.rank_ids(rec.requests_for(store, ["p", "p"], ["video", "shop"], [T0, T0]))
    assert len(video) == TOP_K and "v1" not in video
    assert {rec.store.platform_of(i) for i in video} == {"video"}
    # video history ranks shop items too
    assert len(cross) == TOP_K and {rec.store.platform_of(i) for i in cross} == {"shop"}


def test_rank_after_years_of_silence_still_ranks() -> None:
    """Regression for the float32 underflow in fusion.mix_vector (no vector after ~7 idle years)."""
    rec, store = make_recommender(), Store()
    rec.process([ev(1, "s1", person_id="p")], store, rank=False)
    (ranked,) = rec.rank_ids(rec.requests_for(store, ["p"], ["shop"], [T0 + 10 * 365 * 86400.0]))
    assert len(ranked) == TOP_K


@pytest.mark.parametrize("weights", [{"shop": 0.0, "video": 0.0}, {"video": -1.0}, {"shop": 0.0}])
def test_contributions_stay_finite_with_zero_or_negative_platform_weights(weights: dict[str, float]) -> None:
    """Regression: explanations masked platforms with alpha <= 0 as padding, giving a -inf contribution
    (serialised as null) when every platform of the person had a weight of 0 or below."""
    cfg = Config(platforms=PLATFORMS, worker=WorkerConfig(top_k=TOP_K), model=ModelConfig(platform_weights=weights))
    rec = make_recommender(cfg=cfg)
    events = [ev(n, item, person_id="p") for n, item in enumerate(["s1", "v1", "v2", "s2"], start=1)]
    outcomes, rejections = run(rec, Store(), events)
    assert rejections == [] and len(outcomes) == 4
    for out in outcomes:
        assert len(out.items) == TOP_K
        for item in recs(out):
            assert np.isfinite(item.score)
            if item.reason["kind"] == "similar_to_history":
                assert np.isfinite(item.reason["contribution"]), item.reason
                assert item.reason["platform"] in {"shop", "video"}
        assert b"null" not in encode(
            Recommendation(out.person_id, out.event.platform, out.event.event_id, out.event.ts, "m", recs(out), 0)
        )


# -------------------------------------------------------------------------------- rejections


def test_duplicate_is_rejected_and_changes_nothing() -> None:
    rec, store = make_recommender(), Store()
    run(rec, store, [ev(1, "s1"), ev(2, "s2")])
    before = store["shop:u1"]
    outcomes, rejections = run(rec, store, [ev(1, "s7")])  # same event id, even with another item
    assert reasons(rejections) == ["duplicate"]
    assert rejections[0].position == 0 and "e1" in rejections[0].detail
    assert store["shop:u1"] == before
    assert H("s7") not in store.load("shop:u1").consumed
    # ...and answered again, from the unchanged state: a replay after a crash must not lose its answer
    (again,) = outcomes
    assert again.replayed and again.position == 0 and again.person_id == "shop:u1"
    assert {"s1", "s2"}.isdisjoint(i.item_id for i in recs(again))


def test_a_replayed_batch_is_answered_as_before_and_learns_nothing() -> None:
    rec, store = make_recommender(), Store()
    batch = [ev(1, "s1"), ev(2, "s2"), ev(3, "s3")]
    first, _ = run(rec, store, batch)
    before = dict(store)
    again, rejections = run(rec, store, batch)
    assert reasons(rejections) == ["duplicate"] * 3 and dict(store) == before
    assert [o.event for o in again] == batch and all(o.replayed for o in again)
    assert not any(o.replayed for o in first)
    # the last event's answer is the same list: the state it was ranked from has not changed
    assert [i.item_id for i in recs(again[-1])] == [i.item_id for i in recs(first[-1])]


def test_a_duplicate_of_a_deleted_item_is_not_answered() -> None:
    rec, store = make_recommender(), Store()
    run(rec, store, [ev(1, "s1"), ev(2, "s2")])
    rec.apply_items([ItemDelete("s2", "shop")])
    outcomes, rejections = run(rec, store, [ev(2, "s2")])
    assert outcomes == [] and reasons(rejections) == ["duplicate"]


def test_duplicate_inside_one_batch() -> None:
    rec, store = make_recommender(), Store()
    outcomes, rejections = run(rec, store, [ev(1, "s1"), ev(2, "s2"), ev(1, "s1")])
    assert [(o.position, o.replayed) for o in outcomes] == [(0, False), (1, False), (2, True)]
    assert [(r.position, r.reason) for r in rejections] == [(2, "duplicate")]


def test_event_ids_are_deduplicated_per_person() -> None:
    rec, store = make_recommender(), Store()
    outcomes, rejections = run(rec, store, [ev(1, "s1", user="a"), ev(1, "s1", user="b")])
    assert len(outcomes) == 2 and rejections == []


def test_out_of_order_beyond_the_allowed_lateness() -> None:
    rec, store = make_recommender(), Store()
    run(rec, store, [ev(1, "s1", ts=LATENESS + 100)])
    before = store["shop:u1"]
    outcomes, rejections = run(rec, store, [ev(2, "s2", ts=99)])
    assert outcomes == [] and reasons(rejections) == ["out_of_order"]
    assert store["shop:u1"] == before
    # within the allowed lateness (boundary included) a late event is learned
    outcomes, rejections = run(rec, store, [ev(3, "s3", ts=100), ev(4, "s4", ts=LATENESS + 50)])
    assert rejections == [] and len(outcomes) == 2
    # the newest timestamp does not move back
    assert store.load("shop:u1").last_ts == T0 + LATENESS + 100


def test_out_of_order_is_per_person_across_platforms() -> None:
    rec, store = make_recommender(), Store()
    rec.identity.link(IdentityLink("shop", "u1", "alice"))
    rec.identity.link(IdentityLink("video", "u9", "alice"))
    run(rec, store, [ev(1, "s1", ts=10 * LATENESS)])
    _, rejections = run(rec, store, [ev(2, "v1", user="u9", ts=0)])
    assert reasons(rejections) == ["out_of_order"]
    outcomes, _ = run(rec, store, [ev(3, "v1", user="other", ts=0)])  # another person: fine
    assert len(outcomes) == 1


def test_unknown_item_is_rejected_and_changes_nothing() -> None:
    rec, store = make_recommender(), Store()
    run(rec, store, [ev(1, "s1")])
    before = store["shop:u1"]
    outcomes, rejections = run(rec, store, [ev(2, "s-missing")])
    assert outcomes == [] and reasons(rejections) == ["unknown_item"] and "s-missing" in rejections[0].detail
    assert store["shop:u1"] == before
    # once the catalog has it, the same event is accepted
    rec.apply_items([ItemUpsert("s-missing", "shop", "late arrival")])
    outcomes, rejections = run(rec, store, [ev(2, "s-missing")])
    assert rejections == [] and len(outcomes) == 1


def test_item_of_another_platform_is_an_unknown_item() -> None:
    """Regression: such an event was learned into the wrong platform profile, and when its platform had
    no items yet the whole batch failed with IndexNotReady (after its states had been saved)."""
    rec, store = make_recommender(), Store()
    outcomes, rejections = run(
        rec, store, [ev(1, "s1"), ev(2, "v1", platform="music"), ev(3, "v2", platform="shop"), ev(4, "s2")]
    )
    assert [o.position for o in outcomes] == [0, 3]
    assert [(r.position, r.reason) for r in rejections] == [(1, "unknown_item"), (2, "unknown_item")]
    assert "'video'" in rejections[0].detail and "'music'" in rejections[0].detail
    assert set(store.load("shop:u1").consumed) == {H("s1"), H("s2")}


def test_rejection_order_duplicate_before_out_of_order_before_unknown_item() -> None:
    rec, store = make_recommender(), Store()
    run(rec, store, [ev(1, "s1", ts=10 * LATENESS)])
    late, now = 0.0, 10 * LATENESS
    _, rejections = run(rec, store, [ev(1, "nope", ts=late), ev(2, "nope", ts=late), ev(3, "nope", ts=now)])
    assert reasons(rejections) == ["duplicate", "out_of_order", "unknown_item"]


# ---------------------------------------------------------------------------------- identity


def test_identity_links_join_platform_users_into_one_person() -> None:
    rec, store = make_recommender(), Store()
    rec.identity.link(IdentityLink("shop", "u1", "alice"))
    rec.identity.link(IdentityLink("video", "v9", "alice"))
    assert len(rec.identity) == 2
    outcomes, _ = run(rec, store, [ev(1, "s1", user="u1"), ev(2, "v1", user="v9"), ev(3, "v2", user="u1")])
    assert [o.person_id for o in outcomes] == ["alice", "alice", "video:u1"]  # links are per platform
    alice = store.load("alice")
    assert set(alice.profiles) == {"shop", "video"} and alice.consumed == [H("s1"), H("v1")]
    assert set(store) == {"alice", "video:u1"}


def test_unlinked_users_are_platform_scoped_persons() -> None:
    identity = Identity()
    assert identity.person_of(ev(1, "s1", user="u1")) == "shop:u1"
    assert identity.person_of(ev(1, "v1", user="u1")) == "video:u1"
    identity.link(IdentityLink("shop", "u1", "p1"))
    assert identity.person_of(ev(1, "s1", user="u1")) == "p1"
    identity.link(IdentityLink("shop", "u1", "p2"))  # a later link replaces the earlier one
    assert identity.person_of(ev(1, "s1", user="u1")) == "p2" and len(identity) == 1


def test_an_unlinked_user_is_their_own_person_again_for_later_events() -> None:
    rec, store = make_recommender(), Store()
    rec.identity.link(IdentityLink("shop", "u1", "alice"))
    rec.identity.link(IdentityLink("video", "u1", "alice"))
    (first,), _ = run(rec, store, [ev(1, "s1")])
    rec.identity.unlink("shop", "u1")
    rec.identity.unlink("shop", "nobody")  # unknown: nothing happens
    assert len(rec.identity) == 1
    outcomes, _ = run(rec, store, [ev(2, "s2"), ev(3, "v1")])
    assert [first.person_id, *(o.person_id for o in outcomes)] == ["alice", "shop:u1", "alice"]
    assert store.load("alice").consumed == [H("s1"), H("v1")] and store.load("shop:u1").consumed == [H("s2")]


def test_explicit_person_id_wins_over_links() -> None:
    rec, store = make_recommender(), Store()
    rec.identity.link(IdentityLink("shop", "u1", "alice"))
    outcomes, _ = run(rec, store, [ev(1, "s1", person_id="bob"), ev(2, "s2", person_id="")])
    assert [o.person_id for o in outcomes] == ["bob", "alice"]  # an empty person_id is no person_id


# ------------------------------------------------------------------------------ cross-platform


def test_history_on_one_platform_changes_the_ranking_on_another() -> None:
    rec = make_recommender(top_k=N_ITEMS)  # the whole shop, ranked
    video_history = [ev(i, f"v{i}", person_id="alice") for i in range(1, 6)]
    shop_event = ev(10, "s0", person_id="alice")
    outcomes, _ = run(rec, Store(), [*video_history, shop_event])
    with_history = outcomes[-1]
    (without,), _ = run(rec, Store(), [shop_event])
    ranked_with = [i.item_id for i in recs(with_history)]
    ranked_without = [i.item_id for i in recs(without)]
    assert ranked_with != ranked_without
    assert {rec.store.platform_of(i) for i in ranked_with} == {"shop"}
    # the difference leans towards the video history
    video_dir = rec.store.vectors_of([f"v{i}" for i in range(1, 6)]).sum(axis=0)
    video_dir /= np.linalg.norm(video_dir)
    lean_with = float((rec.store.vectors_of(ranked_with[:TOP_K]) @ video_dir).mean())
    lean_without = float((rec.store.vectors_of(ranked_without[:TOP_K]) @ video_dir).mean())
    assert lean_with > lean_without
    # some of the shop items are explained by the video history
    platforms = {i.reason["platform"] for i in recs(with_history)}
    assert platforms <= {"shop", "video"}
    for item in recs(with_history):
        expected = {f"v{i}" for i in range(1, 6)} if item.reason["platform"] == "video" else {"s0"}
        assert set(item.reason.get("because_of", [])) <= expected


def test_a_linked_video_user_changes_shop_recommendations() -> None:
    rec, store = make_recommender(), Store()
    rec.identity.link(IdentityLink("video", "vid-7", "carol"))
    rec.identity.link(IdentityLink("shop", "shop-7", "carol"))
    run(rec, store, [ev(i, f"v{i}", user="vid-7") for i in range(1, 6)])
    (linked,), _ = run(rec, store, [ev(10, "s0", user="shop-7")])
    (alone,), _ = run(rec, Store(), [ev(10, "s0", user="shop-7")])
    assert linked.person_id == "carol"
    assert [i.item_id for i in recs(linked)] != [i.item_id for i in recs(alone)]


# --------------------------------------------------------------------------------- catalog


def test_delete_removes_an_item_from_results() -> None:
    rec = make_recommender()
    (out,), _ = run(rec, Store(), [ev(1, "s0")])
    top = recs(out)[0].item_id
    rec.apply_items([ItemDelete(top, "shop")])
    assert top not in rec.store
    (again,), _ = run(rec, Store(), [ev(1, "s0")])
    assert top not in {i.item_id for i in recs(again)}
    assert [i.item_id for i in recs(again)][: TOP_K - 1] == [i.item_id for i in recs(out)][1:]
    _, rejections = run(rec, Store(), [ev(2, top)])
    assert reasons(rejections) == ["unknown_item"]


def test_upsert_replaces_vector_and_platform() -> None:
    rec = make_recommender()
    old = rec.store.vectors_of(["s5"])[0].copy()
    new_item = ItemUpsert("s5", "video", "a completely different thing")
    rec.apply_items([new_item])
    assert len(rec.store) == 2 * N_ITEMS and rec.store.platform_of("s5") == "video"
    new = rec.store.vectors_of(["s5"])[0]
    np.testing.assert_array_equal(new, HashEncoder(DIM).encode([text_of(new_item)])[0])
    assert not np.allclose(new, old)
    (out,), _ = run(rec, Store(), [ev(1, "s5", platform="video")])  # now a video item
    assert all(rec.store.platform_of(i.item_id) == "video" for i in recs(out))
    _, rejections = run(rec, Store(), [ev(1, "s5", platform="shop")])  # no longer a shop item
    assert reasons(rejections) == ["unknown_item"]
    (shop,), _ = run(rec, Store(), [ev(1, "s0")])
    assert "s5" not in {i.item_id for i in recs(shop)}
    # re-describing a shop item as a copy of s0 moves it to the top of s0's neighbours
    s0 = next(i for i in catalog(PLATFORMS, N_ITEMS) if i.item_id == "s0")
    rec.apply_items([ItemUpsert("s6", "shop", s0.title, s0.text, s0.categories)])
    (shop,), _ = run(rec, Store(), [ev(1, "s0")])
    assert recs(shop)[0].item_id == "s6" and recs(shop)[0].score == pytest.approx(1.0, abs=F16)


def test_same_text_same_vector() -> None:
    rec = make_recommender()
    rec.apply_items([ItemUpsert("twin", "shop", "shop thing 3", text="about shop 3", categories=("cat0",))])
    np.testing.assert_array_equal(rec.store.vectors_of(["twin"]), rec.store.vectors_of(["s3"]))
    (out,), _ = run(rec, Store(), [ev(1, "s3")])
    assert recs(out)[0].item_id == "twin" and recs(out)[0].score == pytest.approx(1.0, abs=F16)


@pytest.mark.parametrize(
    "messages, present, absent",
    [
        ([ItemUpsert("x", "shop", "x1"), ItemDelete("x", "shop")], [], ["x"]),
        ([ItemDelete("s1", "shop"), ItemUpsert("s1", "shop", "back")], ["s1"], []),
        ([ItemUpsert("x", "shop", "first"), ItemUpsert("x", "shop", "second")], ["x"], []),
        ([ItemDelete("never-there", "shop")], [], ["never-there"]),
    ],
)
def test_last_change_in_a_batch_wins(
    messages: list[ItemUpsert | ItemDelete], present: list[str], absent: list[str]
) -> None:
    rec = make_recommender()
    encoder = rec.encoder.text  # type: ignore[attr-defined]
    assert isinstance(encoder, HashEncoder)
    encoder.calls.clear()
    rec.apply_items(messages)
    assert all(i in rec.store for i in present) and not any(i in rec.store for i in absent)
    upserts = plan_item_changes(messages).upserts
    assert encoder.calls == ([[text_of(u) for u in upserts]] if upserts else [])  # one call, the last changes only
    if upserts:
        np.testing.assert_array_equal(
            rec.store.vectors_of([upserts[-1].item_id]), HashEncoder(DIM).encode([text_of(upserts[-1])])
        )


# ------------------------------------------------------------------------- property checks


@dataclass(frozen=True)
class Script:
    links: list[IdentityLink]
    events: list[BehaviorEvent]
    batch_sizes: list[int]


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    users = ["u0", "u1", "u2"]
    links = [
        IdentityLink(p, u, draw(st.sampled_from(["alice", "bob"])))
        for p in PLATFORMS
        for u in users
        if draw(st.booleans())
    ]
    n = draw(st.integers(1, 40))
    events: list[BehaviorEvent] = []
    ts = T0
    for k in range(n):
        if events and draw(st.integers(0, 9)) == 0:  # replay an earlier event (same id, maybe same person)
            events.append(draw(st.sampled_from(events)))
            continue
        ts += draw(st.sampled_from([0.0, 1.0, 60.0, 3600.0, 86400.0 * 3, -60.0, -2 * LATENESS]))
        platform = draw(st.sampled_from(PLATFORMS))
        r = draw(st.integers(0, 29))
        other = [q for q in PLATFORMS if q != platform][0]
        # 12 of 24 items (repeats happen); now and then one not in the catalog, or of the other platform
        item = "ghost" if r == 0 else f"{other[0]}{r % 12}" if r == 1 else f"{platform[0]}{r % 12}"
        etype = draw(st.sampled_from(["view", "click", "like", "purchase", "review", "rating", "share"]))
        value = draw(st.sampled_from([0.5, 1.0, 2.5, 3.0, 4.5, 5.0])) if etype == "rating" else None
        person_id = "zed" if draw(st.integers(0, 14)) == 0 else None
        events.append(
            BehaviorEvent(f"e{k}", ts, platform, draw(st.sampled_from(users)), item, etype, value, person_id)
        )
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=10))
    return Script(links, events, sizes)


def batches(events: list[BehaviorEvent], sizes: list[int]) -> list[list[BehaviorEvent]]:
    out, i, j = [], 0, 0
    while i < len(events):
        size = sizes[j % len(sizes)]
        out.append(events[i : i + size])
        i, j = i + size, j + 1
    return out


def play(script: Script, sizes: list[int]) -> tuple[Recommender, list[tuple[Outcome | Rejection, int]]]:
    """Run the script in batches of ``sizes``; every result with its global event number."""
    rec, store = make_recommender(), Store()
    for link in script.links:
        rec.identity.link(link)
    results: list[tuple[Outcome | Rejection, int]] = []
    start = 0
    for batch in batches(script.events, sizes):
        outcomes, rejections = run(rec, store, batch)
        fresh = [o for o in outcomes if not o.replayed]
        positions = sorted([o.position for o in fresh] + [r.position for r in rejections])
        assert positions == list(range(len(batch)))  # every event learned or rejected, exactly once
        assert [o.position for o in outcomes] == sorted(o.position for o in outcomes)
        # a duplicate of a catalog item is answered again; nothing else is
        known_duplicates = {r.position for r in rejections if r.reason == "duplicate" and r.event.item_id in rec.store}
        assert {o.position for o in outcomes if o.replayed} == known_duplicates
        results.extend((r, start + r.position) for r in [*fresh, *rejections])
        start += len(batch)
    results.sort(key=lambda x: x[1])
    return rec, results


@fuzz
@given(script=scripts())
def test_processing_invariants(script: Script) -> None:
    rec, results = play(script, script.batch_sizes)
    # a shadow model of the stateful rules, person by person
    applied: dict[str, set[str]] = {}
    newest: dict[str, float] = {}
    history: dict[str, dict[str, set[str]]] = {}  # person -> platform -> items interacted with
    for result, n in results:
        event = script.events[n]
        assert result.event == event
        person = rec.identity.person_of(event)
        ids = applied.setdefault(person, set())
        if event.event_id in ids:
            expected = "duplicate"
        elif event.ts < newest.get(person, float("-inf")) - LATENESS:
            expected = "out_of_order"
        elif event.item_id == "ghost" or rec.store.platform_of(event.item_id) != event.platform:
            expected = "unknown_item"
        else:
            expected = None
        if expected is not None:
            assert isinstance(result, Rejection) and result.reason == expected, (n, result)
            continue
        assert isinstance(result, Outcome), (n, result)
        assert result.person_id == person
        ids.add(event.event_id)
        newest[person] = max(newest.get(person, float("-inf")), event.ts)
        mine = history.setdefault(person, {})
        mine.setdefault(event.platform, set()).add(event.item_id)
        consumed = set().union(*mine.values())
        ranked = [i.item_id for i in recs(result)]
        consumed_here = {i for i in consumed if rec.store.platform_of(i) == event.platform}
        assert len(ranked) == len(set(ranked)) == min(TOP_K, N_ITEMS - len(consumed_here))
        assert not set(ranked) & consumed, "a consumed item was recommended"
        assert all(rec.store.platform_of(i) == event.platform for i in ranked), "left the event's platform"
        assert all(i.platform == event.platform for i in recs(result))
        scores = [i.score for i in recs(result)]
        assert scores == sorted(scores, reverse=True)
        for item in recs(result):
            because = set(item.reason.get("because_of", []))
            if item.reason["kind"] == "similar_to_last_item":
                assert item.reason["because_of"] == [event.item_id]
            else:
                assert item.reason["kind"] == "similar_to_history"
                assert item.reason["platform"] in mine
                assert because <= mine[item.reason["platform"]], "explained by an item never touched there"
            assert because <= consumed


@fuzz
@given(script=scripts())
def test_batches_give_the_same_outcomes_as_one_by_one(script: Script) -> None:
    _, batched = play(script, script.batch_sizes)
    _, single = play(script, [1])
    assert len(batched) == len(single) == len(script.events)
    for (a, na), (b, nb) in zip(batched, single):
        assert na == nb and type(a) is type(b) and a.event == b.event
        if isinstance(a, Rejection):
            assert isinstance(b, Rejection) and (a.reason, a.detail) == (b.reason, b.detail)
        else:
            assert isinstance(b, Outcome) and a.person_id == b.person_id
            assert [(i.item_id, i.platform) for i in recs(a)] == [(i.item_id, i.platform) for i in recs(b)]
            for x, y in zip(recs(a), recs(b)):  # BLAS may round differently for other batch shapes
                assert x.score == pytest.approx(y.score, abs=1e-5)
                rx, ry = dict(x.reason), dict(y.reason)
                assert rx.pop("contribution", 0.0) == pytest.approx(ry.pop("contribution", 0.0), abs=1e-3)
                assert rx == ry  # kind, platform, because_of

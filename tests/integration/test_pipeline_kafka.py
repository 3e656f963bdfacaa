"""End to end on the real broker: items, identity links and events in; exact recommendations out."""

from __future__ import annotations

import base64
import hashlib
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import two_platforms as world
from kafka_helpers import WorkerProcess, consume, produce, run

from fusionrec.contracts import BehaviorEvent, decode_recommendation, encode, identity_key
from fusionrec.core import DictStates, Recommender
from stream.compose import build_recommender
from stream.topics import ensure_topics

TOP_K = 5


@pytest.fixture(scope="module")
def worker(bootstrap: str, artifacts_dir: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(
        bootstrap,
        world.PLATFORMS,
        extra_env={"FUSIONREC_TOP_K": str(TOP_K), "FUSIONREC_CATALOG_WAIT_S": "1", "FUSIONREC_PARTITIONS": "3"},
    )
    cfg = w.config()
    run(ensure_topics(cfg))
    catalog = [(cfg.kafka.items_topic, i.item_id.encode(), encode(i)) for i in world.items()]
    catalog += [(cfg.kafka.identity_topic, identity_key(link.platform, link.user_id), encode(link)) for link in world.links()]
    run(produce(bootstrap, catalog))
    w.start(artifacts_dir)
    try:
        w.wait_ready(items=len(world.items()))
        yield w
    finally:
        w.stop()


def expected_outcomes(rec: Recommender, events: list[BehaviorEvent]) -> dict[str, list[dict]]:
    """What the same core computes in-process for the same input (one event at a time)."""
    states = DictStates()
    out: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        outcomes, rejections = rec.process([event], states)
        assert not rejections
        (o,) = outcomes
        out[o.person_id].append({"event_id": event.event_id, "items": [(i.item_id, i.score, dict(i.reason)) for i in o.rec_items()]})
    return out


def test_recommendations_are_exact_per_person(worker: WorkerProcess, bootstrap: str) -> None:
    cfg = worker.config()
    events = world.events(t0=time.time() - 3600)
    metadata = run(produce(bootstrap, [(cfg.kafka.events_topic(e.platform), e.user_id.encode(), encode(e)) for e in events]))
    assert len(metadata) == len(events)

    records = run(consume(bootstrap, cfg.kafka.recs_topic, expect=len(events)))
    assert len(records) == len(events), worker.log_tail()

    reference = build_recommender(cfg)
    reference.apply_items(world.items())
    for link in world.links():
        reference.identity.link(link)
    # Kafka orders events within a topic partition, not across platform topics: a person's shop and
    # video events may interleave either way.  The reference replays each person's events in the order
    # the worker answered them, after checking that each platform's own order was kept.
    answered = [decode_recommendation(r.value).event_id for r in records]
    by_id = {e.event_id: e for e in events}
    per_person_answered: dict[str, list[str]] = defaultdict(list)
    for r in records:
        per_person_answered[r.key.decode()].append(decode_recommendation(r.value).event_id)
    for person, ids in per_person_answered.items():
        for platform in world.PLATFORMS:
            mine = [i for i in ids if by_id[i].platform == platform]
            assert mine == sorted(mine, key=lambda i: by_id[i].ts), f"{person}: {platform} order not kept"
    expected = expected_outcomes(reference, [by_id[i] for i in answered])
    assert set(expected) == {"alice", "bob", "carol", "video:anon-9"}

    platform_of = {i.item_id: i.platform for i in world.items()}
    consumed: dict[str, set[str]] = defaultdict(set)
    by_event = {e.event_id: e for e in events}
    got: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        rec = decode_recommendation(record.value)
        assert record.key == rec.person_id.encode()  # keyed by person
        assert rec.v == 1 and rec.model_version == reference.model_version
        event = by_event[rec.event_id]
        assert rec.platform == event.platform and rec.event_ts == event.ts
        assert rec.event_produced_at_ms is not None and rec.produced_at_ms >= rec.event_produced_at_ms
        consumed[rec.person_id].add(event.item_id)
        ids = [i.item_id for i in rec.items]
        assert len(ids) == TOP_K and len(set(ids)) == TOP_K
        assert not set(ids) & consumed[rec.person_id], "an already-consumed item was recommended"
        assert {platform_of[i] for i in ids} == {event.platform}, "platform filter broken"
        assert all(i.reason["kind"] for i in rec.items)
        got[rec.person_id].append({"event_id": rec.event_id, "items": [(i.item_id, i.score, dict(i.reason)) for i in rec.items]})

    assert set(got) == set(expected)
    for person, messages in expected.items():
        assert [m["event_id"] for m in got[person]] == [m["event_id"] for m in messages], "per-person order"
        for mine, theirs in zip(got[person], messages):
            assert [i for i, _, _ in mine["items"]] == [i for i, _, _ in theirs["items"]]
            assert [r for _, _, r in mine["items"]] == [r for _, _, r in theirs["items"]]
            assert [s for _, s, _ in mine["items"]] == pytest.approx([s for _, s, _ in theirs["items"]], abs=1e-4)

    # cross-platform identity: alice's shop history changes what she is shown on the video app.  Her
    # shop and video events travel on two topics, so the worker may answer some video events before any
    # shop event (then there is nothing to fuse yet); those answered after one must differ from what a
    # video-only person is shown, and a replay with her shop history first shows it whatever the timing.
    def fresh() -> Recommender:
        rec = build_recommender(cfg)
        rec.apply_items(world.items())
        for link in world.links():
            rec.identity.link(link)
        return rec

    alices = [by_id[i] for i in per_person_answered["alice"]]
    video_only = [
        BehaviorEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "person_id": "alice-video-only"}) for e in alices if e.platform == "video"
    ]
    assert video_only, "alice has video events"
    alone = [[i for i, _, _ in m["items"]] for m in expected_outcomes(fresh(), video_only)["alice-video-only"]]
    shop_first = sorted(alices, key=lambda e: e.platform != "shop")  # stable: each platform's order kept
    fused = [[i for i, _, _ in m["items"]] for m in expected_outcomes(fresh(), shop_first)["alice"] if by_event[m["event_id"]].platform == "video"]
    assert fused != alone
    seen_shop, after_shop = False, []
    for k, e in enumerate(alices):
        seen_shop |= e.platform == "shop"
        if seen_shop and e.platform == "video":
            after_shop.append((got["alice"][k]["items"], sum(x.platform == "video" for x in alices[:k])))
    if after_shop:
        assert any([i for i, _, _ in items] != alone[n] for items, n in after_shop)


def _event(n: int, ts: float, **overrides: object) -> dict:
    base = {"v": 1, "event_id": f"dlq-{n}", "ts": ts, "platform": "shop", "user_id": "u-dana", "item_id": "s-knife", "event_type": "click"}
    return {**base, **overrides}


def test_bad_messages_reach_the_dead_letter_topic(worker: WorkerProcess, bootstrap: str) -> None:
    cfg = worker.config()
    shop = cfg.kafka.events_topic("shop")
    now = time.time()
    valid = [_event(i, now - 100 + i, item_id=item) for i, item in enumerate(["s-knife", "s-espresso", "s-skillet", "s-mouse"])]
    late = _event(90, now - 10 * 86400, item_id="s-keyboard")  # 10 days before dana's newest event
    bad: list[tuple[str, str, bytes]] = [
        ("malformed_json", shop, b'{"v": 1, "event_id": '),
        ("malformed_json", shop, b'{"v":1,"ts":NaN}'),
        ("not_an_object", shop, b"[1, 2, 3]"),
        ("missing_field", shop, orjson.dumps({k: v for k, v in _event(50, now).items() if k != "item_id"})),
        ("wrong_type", shop, orjson.dumps({**_event(51, now), "ts": "yesterday"})),
        ("wrong_type", shop, orjson.dumps(_event(52, now, user_id=12345))),
        ("unknown_platform", shop, orjson.dumps(_event(53, now, platform="radio"))),
        ("unknown_event_type", shop, orjson.dumps(_event(54, now, event_type="teleport"))),
        ("too_large", shop, orjson.dumps(_event(55, now, context={"note": "x" * 70_000}))),
        ("far_future", shop, orjson.dumps(_event(56, now + 86400))),
        ("unsupported_version", shop, orjson.dumps({**_event(57, now), "v": 99})),
        ("unknown_item", shop, orjson.dumps(_event(58, now, item_id="no-such-item"))),
        ("duplicate", shop, orjson.dumps(valid[0])),
        ("out_of_order", shop, orjson.dumps(late)),
        ("missing_field", cfg.kafka.items_topic, orjson.dumps({"v": 1, "item_id": "x1", "platform": "shop"})),
        ("unknown_platform", cfg.kafka.identity_topic, orjson.dumps({"v": 1, "platform": "tv", "user_id": "a", "person_id": "b"})),
    ]
    # valid events around the bad ones: two before, the rest interleaved
    sequence: list[tuple[str | None, str, bytes]] = [(None, shop, orjson.dumps(v)) for v in valid[:2]]
    for n, (reason, topic, payload) in enumerate(bad):
        sequence.append((reason, topic, payload))
        if n in (4, 9):
            sequence.append((None, shop, orjson.dumps(valid[2 if n == 4 else 3])))
    metadata = run(produce(bootstrap, [(topic, b"u-dana", payload) for _, topic, payload in sequence]))

    letters = run(consume(bootstrap, cfg.kafka.dlq_topic, expect=len(bad), timeout_s=90))
    assert len(letters) == len(bad), worker.log_tail()
    got = sorted(
        (
            (l := orjson.loads(r.value))["reason"],
            l["topic"],
            l["partition"],
            l["offset"],
            l["payload_size"],
            l["payload_sha256"],
            base64.b64decode(l["payload_b64"] if "payload_b64" in l else l["payload_prefix_b64"]),
        )
        for r in letters
    )
    want = sorted(
        (reason, topic, md.partition, md.offset, len(payload), hashlib.sha256(payload).hexdigest(), payload)
        for (reason, topic, payload), md in zip(sequence, metadata)
        if reason is not None
    )
    assert [g[:6] for g in got] == [w[:6] for w in want]
    # exact bytes up to 64 KiB; the too_large one (70 kB) keeps a prefix, its size and its hash
    for (*_, kept), (*_, payload) in zip(got, want):
        if len(payload) <= 64 * 1024:
            assert kept == payload
        else:
            assert payload.startswith(kept) and 0 < len(kept) < len(payload)
    assert any(len(w[6]) > 64 * 1024 for w in want)
    assert all(orjson.loads(r.value)["detail"] for r in letters)

    recs = [decode_recommendation(r.value) for r in run(consume(bootstrap, cfg.kafka.recs_topic, expect=100, timeout_s=5))]
    dana = [r.event_id for r in recs if r.person_id == "shop:u-dana"]
    # ...and the duplicate, dead-lettered because it changes nothing, is answered again from dana's state
    want_answered = [v["event_id"] for v in valid] + [valid[0]["event_id"]]
    assert sorted(dana) == sorted(want_answered), "every valid event around the bad ones was processed"

    metrics = worker.metrics()
    for reason in {r for r, _, _ in bad}:
        count = sum(1 for r, _, _ in bad if r == reason)
        lines = [ln for ln in metrics.splitlines() if ln.startswith(f'fusionrec_dead_letters_total{{reason="{reason}"')]
        assert sum(float(ln.rsplit(" ", 1)[1]) for ln in lines) == count, reason

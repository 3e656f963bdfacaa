"""The compact person state (``fusionrec.state``) and the batch columns it is gathered into
(``fusionrec.pipeline.gather.BatchState``): packing is lossless, anything that does not unpack is a
``bad_state``, profiles of platforms no longer configured survive a batch, and — because every update
rounds to float16 itself — a person packed and reloaded between events ends exactly where a person
never packed does, whatever the micro-batches and restarts in between."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import DictStates, build_core
from fusionrec.contracts import BehaviorEvent
from fusionrec.errors import DecodeError
from fusionrec.fusion import FusionParams, learn
from fusionrec.hashing import stable_hash as H
from fusionrec.pipeline.gather import BatchState
from fusionrec.state import Profile, PersonState, pack, remember, unpack

FUZZ_EXAMPLES = int(os.environ.get("FUSIONREC_FUZZ_EXAMPLES", "500"))
fuzz = settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIM = 8
T0 = 1_600_000_000.0

u64 = st.integers(0, 2**64 - 1)
f32 = st.floats(width=32, allow_nan=False)
f64 = st.floats(allow_nan=False)


@st.composite
def parts(draw: st.DrawFn) -> tuple[int, float, list[int], list[int], list[int], list[tuple[str, float, float, float, int, list[int], bytes]]]:
    """Arguments of ``pack``: any hashes, any finite-or-infinite floats, names up to the format's limit."""
    dim = draw(st.integers(0, 12))
    names = draw(st.lists(st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 255), max_size=4, unique=True))
    profiles = [
        (
            name,
            draw(f32),
            draw(f64),
            draw(f64),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.lists(u64, max_size=25)),
            draw(st.binary(min_size=2 * dim, max_size=2 * dim)),
        )
        for name in names
    ]
    return (
        dim,
        draw(f64),
        draw(st.lists(u64, max_size=70)),
        draw(st.lists(u64, max_size=70)),
        draw(st.lists(u64, max_size=25)),
        profiles,
    )


# ------------------------------------------------------------------------------------- pack/unpack


@fuzz
@given(p=parts())
def test_unpack_inverts_pack(p: tuple) -> None:  # type: ignore[type-arg]
    dim, last_ts, events, consumed, seq, profiles = p
    raw = pack(dim, last_ts, events, consumed, seq, profiles)
    assert unpack(raw) == (last_ts, events, consumed, seq, profiles)
    assert pack(dim, *unpack(raw)) == raw


def test_the_packed_size_is_the_documented_layout() -> None:
    """18 bytes of header, 8 per hash, per profile 1 + name + 25 + 8 per recent item + 2 per dimension:
    two 384-d profiles, 50 events, 50 consumed, 20 in the sequence and 20 recent per platform: ~2.9 KB."""
    s = PersonState.new("p")
    s.recent_events = list(range(50))
    s.consumed = list(range(50))
    s.seq = list(range(20))
    for name in ("shop", "video"):
        s.profiles[name] = Profile(np.ones(384, np.float16), 1.0, 1.0, T0, 20, list(range(20)))
    profile_bytes = sum(1 + len(name) + 25 + 8 * 20 + 2 * 384 for name in ("shop", "video"))
    assert len(s.to_bytes()) == 18 + 8 * (50 + 50 + 20) + profile_bytes == 2895


def test_the_docstring_example_round_trips_through_from_bytes() -> None:
    s = PersonState.new("p1")
    s.profiles["shop"] = Profile.empty(4)
    s.profiles["shop"].set_vector(np.array([3, 4, 0, 0], np.float32))
    remember(s.consumed, 7, 10)
    t = PersonState.from_bytes("p1", s.to_bytes())
    assert t.person_id == "p1" and t.consumed == [7] and t.profiles["shop"].norm == 5.0
    assert t.profiles["shop"].unit.dtype == np.float16
    np.testing.assert_array_equal(t.profiles["shop"].unit, s.profiles["shop"].unit)


def a_state() -> bytes:
    s = PersonState.new("p")
    params = FusionParams(half_life_s=86400.0)
    for n in range(6):
        v = np.random.default_rng(n).normal(size=DIM).astype(np.float32)
        learn(s, platform=("shop", "video")[n % 2], item=H(f"i{n}"), vector=v, weight=1.0, ts=T0 + n, params=params, event=H(f"e{n}"))
    return s.to_bytes()


RAW = a_state()


def test_a_truncated_state_is_a_bad_state_everywhere() -> None:
    """Cut anywhere: ``from_bytes`` and the batch gatherer both say ``bad_state``, never anything else."""
    wrong: dict[str, list[tuple[int, str]]] = {"from_bytes": [], "BatchState": []}
    for cut in range(len(RAW)):
        raw = RAW[:cut]
        for name, decode in (("from_bytes", lambda: PersonState.from_bytes("p", raw)), ("BatchState", lambda: BatchState(("shop", "video"), DIM, ["p"], [raw]))):
            try:
                decode()
                wrong[name].append((cut, "decoded"))
            except DecodeError as exc:
                if exc.reason != "bad_state":
                    wrong[name].append((cut, exc.reason))
            except Exception as exc:  # noqa: BLE001 - what the test is about
                wrong[name].append((cut, type(exc).__name__))
    summary = {name: {kind: [c for c, k in got if k == kind] for kind in dict.fromkeys(k for _, k in got)} for name, got in wrong.items() if got}
    assert not summary, f"of {len(RAW)} cuts, these raised something else than bad_state: {summary}"


@fuzz
@given(raw=st.binary(max_size=200))
def test_random_bytes_unpack_or_are_a_bad_state(raw: bytes) -> None:
    for decode in (lambda: PersonState.from_bytes("p", raw), lambda: BatchState(("shop",), DIM, ["p"], [raw])):
        try:
            decode()
        except DecodeError as exc:
            assert exc.reason == "bad_state"


def test_a_state_that_does_not_decode_rejects_the_batch_with_bad_state() -> None:
    """The core never learns on top of a state it cannot read (the worker dead-letters such events)."""
    rec = build_core(("shop", "video"), dim=DIM)
    states = DictStates({"p": RAW[:-3]})
    with pytest.raises(DecodeError) as info:
        rec.process([BehaviorEvent("e1", T0, "shop", "u", "s1", "click", person_id="p")], states)
    assert info.value.reason == "bad_state"
    assert states["p"] == RAW[:-3]


# ------------------------------------------------------------------------------------ BatchState


def test_a_batch_packs_unchanged_people_back_to_the_same_bytes() -> None:
    bs = BatchState(("shop", "video"), DIM, ["p", "q"], [RAW, None])
    assert bs.pack([0]) == [RAW]
    assert bs.has[0].tolist() == [True, True] and not bs.has[1].any()
    assert PersonState.from_bytes("q", bs.pack([1])[0]) == PersonState.new("q")


def test_profiles_of_platforms_no_longer_configured_are_kept() -> None:
    """A platform taken out of the config is carried through a batch as is."""
    s = PersonState.from_bytes("p", RAW)
    s.profiles["music"] = Profile(np.arange(DIM, dtype=np.float16), 3.0, 2.0, T0, 4, [H("m1"), H("m2")])
    raw = s.to_bytes()
    bs = BatchState(("shop",), DIM, ["p"], [raw])  # video and music: not configured here
    assert bs.has[0].tolist() == [True]
    back = PersonState.from_bytes("p", bs.pack([0])[0])
    assert back.profiles.keys() == s.profiles.keys()
    for name, profile in s.profiles.items():
        got = back.profiles[name]
        np.testing.assert_array_equal(got.unit, profile.unit)
        assert (got.norm, got.mass, got.ts, got.n, got.recent) == (profile.norm, profile.mass, profile.ts, profile.n, profile.recent)
    assert (back.consumed, back.recent_events, back.seq, back.last_ts) == (s.consumed, s.recent_events, s.seq, s.last_ts)
    # ...and still there after the person learned something on a configured platform
    rec = build_core(("shop",), dim=DIM)
    states = DictStates({"p": raw})
    rec.process([BehaviorEvent("e-new", T0 + 100, "shop", "u", "s1", "click", person_id="p")], states)
    after = states.state("p")
    assert after is not None and after.profiles.keys() == {"shop", "video", "music"}
    assert after.profiles["shop"].n == s.profiles["shop"].n + 1
    for name in ("video", "music"):
        np.testing.assert_array_equal(after.profiles[name].unit, s.profiles[name].unit)
        assert after.profiles[name].recent == s.profiles[name].recent


def test_a_state_of_another_encoder_dimension_is_never_written_back_corrupt() -> None:
    """The stored state was made with an encoder of another dimension (the model was changed): the
    batch either refuses it (``bad_state``, nothing written) or writes a state that decodes."""
    rec = build_core(("shop", "video"), dim=2 * DIM)
    states = DictStates({"p": RAW})  # DIM-dimensional profiles
    event = BehaviorEvent("e-new", T0 + 100, "shop", "u", "s1", "click", person_id="p")
    try:
        rec.process([event], states)
    except DecodeError as exc:
        assert exc.reason == "bad_state" and states["p"] == RAW
        return
    PersonState.from_bytes("p", states["p"])  # raises DecodeError if what was written does not decode


# ------------------------------------------------------------------ packing never changes the result


history = st.lists(
    st.tuples(
        st.sampled_from(["shop", "video"]),
        st.integers(0, 9),  # item (seeds its vector)
        st.one_of(st.just(0.0), st.floats(1e-3, 3), st.floats(-3, -1e-3)),  # weight
        st.floats(0, 1e7, allow_nan=False),  # timestamp (any order)
        st.booleans(),  # pack and reload before this event
    ),
    max_size=40,
)


@fuzz
@given(events=history)
def test_a_person_packed_between_events_is_the_person_never_packed(events: list[tuple[str, int, float, float, bool]]) -> None:
    params = FusionParams(half_life_s=86400.0, max_consumed=7, max_recent_events=5)
    straight, reloaded = PersonState.new("p"), PersonState.new("p")
    for n, (platform, item, weight, ts, reload) in enumerate(events):
        v = np.random.default_rng(item).normal(size=DIM).astype(np.float32)
        if reload:
            reloaded = PersonState.from_bytes("p", reloaded.to_bytes())
        for s in (straight, reloaded):
            learn(s, platform=platform, item=H(f"{platform}{item}"), vector=v, weight=weight, ts=ts, params=params, event=H(f"e{n}"))
    assert reloaded.to_bytes() == straight.to_bytes()
    for name, p in straight.profiles.items():
        np.testing.assert_array_equal(reloaded.profiles[name].vec, p.vec)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[BehaviorEvent], list[int], set[int]]:
    n = draw(st.integers(1, 40))
    events: list[BehaviorEvent] = []
    ts = T0
    for k in range(n):
        if events and draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(events)))  # a replay: a duplicate
            continue
        ts += draw(st.sampled_from([0.0, 1.0, 3600.0, 86400.0 * 3, -60.0]))
        platform = draw(st.sampled_from(["shop", "video"]))
        etype = draw(st.sampled_from(["view", "click", "purchase", "rating"]))
        value = draw(st.sampled_from([0.5, 2.5, 4.5])) if etype == "rating" else None
        person = draw(st.sampled_from(["alice", "bob", "carol"]))
        events.append(BehaviorEvent(f"e{k}", ts, platform, person, f"{platform[0]}{draw(st.integers(0, 11))}", etype, value, person_id=person))
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=6))
    restarts = set(draw(st.lists(st.integers(0, 8), max_size=3)))
    return events, sizes, restarts


@settings(max_examples=max(10, FUZZ_EXAMPLES // 5), derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams())
def test_the_core_ends_in_the_same_states_whatever_the_batches_and_restarts(stream: tuple[list[BehaviorEvent], list[int], set[int]]) -> None:
    """One event at a time on one core, against the stream cut into other micro-batches with the
    worker restarted (a fresh core reading the stored bytes) before some of them."""
    events, sizes, restarts = stream
    straight = DictStates()
    rec = build_core(("shop", "video"), dim=DIM)
    for e in events:
        rec.process([e], straight, rank=False)
    batched = DictStates()
    rec = build_core(("shop", "video"), dim=DIM)
    at, b = 0, 0
    while at < len(events):
        if b in restarts:
            rec = build_core(("shop", "video"), dim=DIM)
        size = sizes[b % len(sizes)]
        rec.process(events[at : at + size], batched, rank=b % 2 == 0)
        at, b = at + size, b + 1
    assert batched == straight

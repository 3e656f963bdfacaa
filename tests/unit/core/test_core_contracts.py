"""Message contracts: every stateless reject reason, round trips, and fuzzing of the decoders.

Fuzz volume: ``FUSIONREC_FUZZ_EXAMPLES`` (default 500) examples per property; seeds are fixed.
"""

from __future__ import annotations

import dataclasses
import base64
import hashlib
import json
import math
import os
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionrec.config import DEFAULT_EVENT_WEIGHTS, LimitsConfig
from fusionrec.contracts import (
    REJECT_REASONS,
    SCHEMA_VERSION,
    BehaviorEvent,
    DeadLetter,
    IdentityLink,
    ItemDelete,
    ItemUpsert,
    RecItem,
    Recommendation,
    decode_event,
    decode_identity,
    decode_item,
    decode_recommendation,
    encode,
    identity_key,
    identity_key_parts,
    item_key_id,
)
from fusionrec.errors import DecodeError, RecError, ValidationError

FUZZ_EXAMPLES = int(os.environ.get("FUSIONREC_FUZZ_EXAMPLES", "500"))
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LIMITS = LimitsConfig()
NOW = 1_700_000_000.0
PLATFORMS = frozenset({"shop", "video"})
EVENT_TYPES = frozenset(DEFAULT_EVENT_WEIGHTS)

VALID_EVENT: dict[str, Any] = {
    "v": 1,
    "event_id": "e1",
    "ts": NOW - 10.5,
    "platform": "shop",
    "user_id": "u1",
    "item_id": "i9",
    "event_type": "rating",
    "value": 4.0,
    "person_id": "p1",
    "context": {"page": "home"},
}
VALID_ITEM: dict[str, Any] = {
    "v": 1,
    "op": "upsert",
    "item_id": "i9",
    "platform": "video",
    "title": "A film",
    "text": "About things.",
    "categories": ["drama", "crime"],
}
VALID_IDENTITY: dict[str, Any] = {"v": 1, "platform": "shop", "user_id": "u1", "person_id": "alice"}


def dec_event(raw: bytes, limits: LimitsConfig = LIMITS) -> BehaviorEvent:
    return decode_event(raw, platforms=PLATFORMS, event_types=EVENT_TYPES, limits=limits, now=NOW)


def dec_item(raw: bytes, limits: LimitsConfig = LIMITS) -> ItemUpsert | ItemDelete:
    return decode_item(raw, platforms=PLATFORMS, limits=limits)


def dec_identity(raw: bytes, limits: LimitsConfig = LIMITS) -> IdentityLink:
    return decode_identity(raw, platforms=PLATFORMS, limits=limits)


DECODERS: dict[str, Callable[..., Any]] = {"event": dec_event, "item": dec_item, "identity": dec_identity}


def with_(base: dict[str, Any], **changes: Any) -> bytes:
    """``base`` with fields replaced (a value of ``...`` removes the field), as JSON bytes."""
    obj = dict(base)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return orjson.dumps(obj)


def reason_of(decoder: Callable[..., Any], raw: bytes, limits: LimitsConfig = LIMITS) -> str:
    with pytest.raises(ValidationError) as info:
        decoder(raw, limits)
    assert isinstance(info.value, DecodeError) and isinstance(info.value, RecError)
    assert info.value.reason in REJECT_REASONS
    assert str(info.value).startswith(info.value.reason + ": ")
    return info.value.reason


# --------------------------------------------------------------------------------- valid messages


def test_valid_event_decodes_to_the_expected_dataclass() -> None:
    event = dec_event(orjson.dumps(VALID_EVENT))
    assert event == BehaviorEvent(
        event_id="e1",
        ts=NOW - 10.5,
        platform="shop",
        user_id="u1",
        item_id="i9",
        event_type="rating",
        value=4.0,
        person_id="p1",
        context={"page": "home"},
    )


def test_minimal_event_leaves_optional_fields_none_and_v_defaults() -> None:
    raw = with_(VALID_EVENT, v=..., value=..., person_id=..., context=...)
    event = dec_event(raw)
    assert event.value is None and event.person_id is None and event.context is None
    assert event.v == SCHEMA_VERSION


def test_integer_numbers_become_floats() -> None:
    event = dec_event(with_(VALID_EVENT, ts=1_699_999_000, value=5))
    assert event.ts == 1_699_999_000.0 and isinstance(event.ts, float)
    assert event.value == 5.0 and isinstance(event.value, float)


@pytest.mark.parametrize(
    "event",
    [
        BehaviorEvent("e1", NOW, "shop", "u1", "i1", "click"),
        BehaviorEvent("e2", 0.0, "video", "u 2", "ï", "rating", value=1.5),
        BehaviorEvent("e3", NOW + 299.0, "shop", "u3", "i3", "view", person_id="p", context={"a": "b", "c": "d"}),
        BehaviorEvent("x" * LIMITS.max_field_chars, 12.25, "video", "u", "i", "purchase", value=-3.0),
    ],
)
def test_event_round_trip(event: BehaviorEvent) -> None:
    raw = encode(event)
    assert b"null" not in raw  # None fields are left out
    assert dec_event(raw) == event


@pytest.mark.parametrize(
    "item",
    [
        ItemUpsert("i1", "shop", "Title"),
        ItemUpsert("i2", "video", "Film", text="plot", categories=("a", "b")),
        ItemDelete("i3", "shop"),
    ],
)
def test_item_round_trip(item: ItemUpsert | ItemDelete) -> None:
    assert dec_item(encode(item)) == item


def test_item_defaults_and_category_truncation() -> None:
    item = dec_item(orjson.dumps({"item_id": "i", "platform": "shop", "title": "t", "categories": ["c" * 300]}))
    assert isinstance(item, ItemUpsert)
    assert item.text == "" and item.categories == ("c" * LIMITS.max_field_chars,)
    # a delete needs no title
    assert dec_item(orjson.dumps({"op": "delete", "item_id": "i", "platform": "shop"})) == ItemDelete("i", "shop")


def test_identity_round_trip() -> None:
    link = IdentityLink("video", "u7", "alice")
    assert dec_identity(encode(link)) == link
    assert dec_identity(orjson.dumps(VALID_IDENTITY)) == IdentityLink("shop", "u1", "alice")


@pytest.mark.parametrize("produced", [None, 1_700_000_000_123])
def test_recommendation_round_trip(produced: int | None) -> None:
    rec = Recommendation(
        person_id="alice",
        platform="shop",
        event_id="e1",
        event_ts=NOW,
        model_version="fusion-v1-abc",
        items=(
            RecItem("i1", 0.91, "shop", {"kind": "similar_to_history", "platform": "video", "contribution": 0.5,
                                         "because_of": ["v1", "v2"]}),
            RecItem("i2", -0.25, "shop", {"kind": "similar_to_last_item", "platform": "shop", "because_of": ["i0"]}),
        ),
        produced_at_ms=1_700_000_000_999,
        event_produced_at_ms=produced,
    )
    assert decode_recommendation(encode(rec)) == rec


def test_recommendation_without_items_round_trips() -> None:
    rec = Recommendation("p", "shop", "e", 1.0, "m", (), 5)
    assert decode_recommendation(encode(rec)) == rec


def test_dead_letter_encoding_keeps_exact_payload() -> None:
    payload = b"\xff\x00not json"
    letter = DeadLetter("malformed_json", "bad", "fusionrec.events.shop", 3, 42, payload)
    obj = orjson.loads(encode(letter))
    assert obj == {
        "v": SCHEMA_VERSION,
        "reason": "malformed_json",
        "detail": "bad",
        "topic": "fusionrec.events.shop",
        "partition": 3,
        "offset": 42,
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_b64": base64.b64encode(payload).decode(),
    }
    assert base64.b64decode(obj["payload_b64"]) == payload


# Documented bounds of the dead-letter contract (README, dlq row): written out here rather than imported,
# so that the test states the promise instead of echoing the code.
WHOLE_PAYLOAD_BYTES = 64 * 1024  # payloads up to this size travel whole
LETTER_BYTES = 128 * 1024  # an encoded dead letter never exceeds this (Kafka's default limit is 1 MiB)


def dead_letter_of(payload: bytes, detail: str = "too big") -> dict[str, Any]:
    encoded = encode(DeadLetter("too_large", detail, "fusionrec.events.shop", 0, 7, payload))
    assert len(encoded) <= LETTER_BYTES, f"a {len(payload)}-byte payload gave a {len(encoded)}-byte dead letter"
    obj = dict(orjson.loads(encoded))
    assert obj["payload_size"] == len(payload)
    assert obj["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    return obj


def pattern(size: int, seed: bytes) -> bytes:
    """``size`` bytes (up to megabytes, cheaply): the seed repeated, with the size mixed in."""
    block = hashlib.sha256(seed + size.to_bytes(8, "little")).digest() * 64
    return (block * (size // len(block) + 1))[:size]


@fuzz
@given(size=st.integers(0, 6 << 20), seed=st.binary(max_size=16), detail=st.text(max_size=3000))
def test_dead_letter_of_any_payload_fits(size: int, seed: bytes, detail: str) -> None:
    """A dead letter always fits in one Kafka message, whatever the size of what it carries."""
    payload = pattern(size, seed)
    obj = dead_letter_of(payload, detail)
    assert obj["detail"].startswith(detail[:1000])
    if size <= WHOLE_PAYLOAD_BYTES:
        assert base64.b64decode(obj["payload_b64"]) == payload and "payload_truncated" not in obj
    else:
        prefix = base64.b64decode(obj["payload_prefix_b64"])
        assert obj["payload_truncated"] is True and "payload_b64" not in obj
        assert 0 < len(prefix) < size and payload.startswith(prefix)


@fuzz
@given(payload=st.binary(max_size=2048))
def test_dead_letter_of_a_small_payload_round_trips(payload: bytes) -> None:
    assert base64.b64decode(dead_letter_of(payload)["payload_b64"]) == payload


@pytest.mark.parametrize("size", [WHOLE_PAYLOAD_BYTES - 1, WHOLE_PAYLOAD_BYTES, WHOLE_PAYLOAD_BYTES + 1, 750_000, 1 << 20, 8 << 20])
def test_dead_letter_size_boundaries(size: int) -> None:
    payload = os.urandom(size)  # incompressible, unlike the pattern above
    obj = dead_letter_of(payload, detail="x" * 50_000)
    assert ("payload_b64" in obj) == (size <= WHOLE_PAYLOAD_BYTES)
    assert len(obj["detail"]) < 1100


def test_timestamp_boundaries_are_accepted() -> None:
    assert dec_event(with_(VALID_EVENT, ts=0)).ts == 0.0
    assert dec_event(with_(VALID_EVENT, ts=NOW + LIMITS.max_future_s)).ts == NOW + LIMITS.max_future_s


def test_string_length_boundary() -> None:
    n = LIMITS.max_field_chars
    assert dec_event(with_(VALID_EVENT, user_id="u" * n)).user_id == "u" * n
    assert reason_of(dec_event, with_(VALID_EVENT, user_id="u" * (n + 1))) == "too_long"


def test_value_boundary() -> None:
    assert dec_event(with_(VALID_EVENT, value=1e6)).value == 1e6
    assert dec_event(with_(VALID_EVENT, value=-1e6)).value == -1e6
    assert reason_of(dec_event, with_(VALID_EVENT, value=1e6 * (1 + 1e-9))) == "bad_value"


# --------------------------------------------------------------------------------- reject reasons

TOO_BIG = LIMITS.max_message_bytes + 1

EVENT_REJECTS: list[tuple[str, bytes, str]] = [
    ("too_large: padding", b" " * TOO_BIG, "too_large"),
    ("too_large: valid JSON", with_(VALID_EVENT, context={"pad": "x" * LIMITS.max_message_bytes}), "too_large"),
    ("malformed: empty", b"", "malformed_json"),
    ("malformed: truncated", orjson.dumps(VALID_EVENT)[:-1], "malformed_json"),
    ("malformed: trailing garbage", orjson.dumps(VALID_EVENT) + b"x", "malformed_json"),
    ("malformed: not utf-8", b'{"event_id": "\xff"}', "malformed_json"),
    ("malformed: NaN", orjson.dumps(VALID_EVENT).replace(b'"value":4.0', b'"value":NaN'), "malformed_json"),
    ("malformed: Infinity", orjson.dumps(VALID_EVENT).replace(b'"value":4.0', b'"value":Infinity'), "malformed_json"),
    ("malformed: -Infinity", b'{"ts": -Infinity}', "malformed_json"),
    ("bad_value: huge value", with_(VALID_EVENT, value=1e308), "bad_value"),
    ("bad_value: huge negative value", with_(VALID_EVENT, value=-1.000001e6), "bad_value"),
    ("malformed: overflowing number", b'{"ts": 1e400}', "malformed_json"),
    ("malformed: lone surrogate", b'{"event_id": "\\ud800"}', "malformed_json"),
    ("malformed: single quotes", b"{'ts': 1}", "malformed_json"),
    ("not_an_object: list", orjson.dumps([VALID_EVENT]), "not_an_object"),
    ("not_an_object: string", b'"hello"', "not_an_object"),
    ("not_an_object: number", b"1", "not_an_object"),
    ("not_an_object: null", b"null", "not_an_object"),
    ("not_an_object: bool", b"true", "not_an_object"),
    ("version 2", with_(VALID_EVENT, v=2), "unsupported_version"),
    ("version 0", with_(VALID_EVENT, v=0), "unsupported_version"),
    ("version as string", with_(VALID_EVENT, v="1"), "unsupported_version"),
    ("version as bool", with_(VALID_EVENT, v=True), "unsupported_version"),
    ("version null", with_(VALID_EVENT, v=None), "unsupported_version"),
    *[
        (f"missing {name}", with_(VALID_EVENT, **{name: ...}), "missing_field")
        for name in ("ts", "event_id", "platform", "user_id", "item_id", "event_type")
    ],
    ("null event_id", with_(VALID_EVENT, event_id=None), "missing_field"),
    ("null ts", with_(VALID_EVENT, ts=None), "missing_field"),
    ("context value null", with_(VALID_EVENT, context={"a": None}), "missing_field"),
    ("ts as string", with_(VALID_EVENT, ts=str(NOW)), "wrong_type"),
    ("ts as bool", with_(VALID_EVENT, ts=True), "wrong_type"),
    ("ts as false", with_(VALID_EVENT, ts=False), "wrong_type"),
    ("ts as list", with_(VALID_EVENT, ts=[NOW]), "wrong_type"),
    ("value as bool", with_(VALID_EVENT, value=True), "wrong_type"),
    ("value as string", with_(VALID_EVENT, value="4"), "wrong_type"),
    ("event_id as int", with_(VALID_EVENT, event_id=17), "wrong_type"),
    ("user_id as int", with_(VALID_EVENT, user_id=5), "wrong_type"),
    ("item_id as int", with_(VALID_EVENT, item_id=9), "wrong_type"),
    ("item_id as float", with_(VALID_EVENT, item_id=9.5), "wrong_type"),
    ("platform as list", with_(VALID_EVENT, platform=["shop"]), "wrong_type"),
    ("event_type as object", with_(VALID_EVENT, event_type={"t": "click"}), "wrong_type"),
    ("person_id as int", with_(VALID_EVENT, person_id=7), "wrong_type"),
    ("person_id as bool", with_(VALID_EVENT, person_id=False), "wrong_type"),
    ("context as list", with_(VALID_EVENT, context=["a"]), "wrong_type"),
    ("context as string", with_(VALID_EVENT, context="a=b"), "wrong_type"),
    ("context value int", with_(VALID_EVENT, context={"a": 1}), "wrong_type"),
    ("context too many fields", with_(VALID_EVENT, context={str(i): "x" for i in range(17)}), "wrong_type"),
    ("event_id too long", with_(VALID_EVENT, event_id="e" * 257), "too_long"),
    ("user_id too long", with_(VALID_EVENT, user_id="u" * 1000), "too_long"),
    ("item_id too long", with_(VALID_EVENT, item_id="i" * 257), "too_long"),
    ("person_id too long", with_(VALID_EVENT, person_id="p" * 257), "too_long"),
    ("context value too long", with_(VALID_EVENT, context={"a": "x" * 257}), "too_long"),
    ("empty event_id", with_(VALID_EVENT, event_id=""), "bad_value"),
    ("blank user_id", with_(VALID_EVENT, user_id="   "), "bad_value"),
    ("empty item_id", with_(VALID_EVENT, item_id=""), "bad_value"),
    ("empty platform", with_(VALID_EVENT, platform=""), "bad_value"),
    ("empty event_type", with_(VALID_EVENT, event_type=""), "bad_value"),
    ("empty context value", with_(VALID_EVENT, context={"a": ""}), "bad_value"),
    ("unknown platform", with_(VALID_EVENT, platform="tv"), "unknown_platform"),
    ("platform case matters", with_(VALID_EVENT, platform="Shop"), "unknown_platform"),
    ("unknown event type", with_(VALID_EVENT, event_type="hover"), "unknown_event_type"),
    ("negative ts", with_(VALID_EVENT, ts=-1), "bad_timestamp"),
    ("tiny negative ts", with_(VALID_EVENT, ts=-1e-9), "bad_timestamp"),
    ("far future", with_(VALID_EVENT, ts=NOW + LIMITS.max_future_s + 1), "far_future"),
    ("milliseconds by mistake", with_(VALID_EVENT, ts=NOW * 1000), "far_future"),
    ("huge integer ts", b'{"ts": 100000000000000000000000000000}', "far_future"),
]


@pytest.mark.parametrize("raw, reason", [c[1:] for c in EVENT_REJECTS], ids=[c[0] for c in EVENT_REJECTS])
def test_event_rejects(raw: bytes, reason: str) -> None:
    assert reason_of(dec_event, raw) == reason


def test_every_stateless_reason_is_covered() -> None:
    stateful = {"out_of_order", "duplicate", "unknown_item"}  # raised by the core, not the decoders
    stateful.add("processing_error")  # the worker's, for an unexpected exception on one message
    covered = {c[2] for c in EVENT_REJECTS}
    assert stateful <= set(REJECT_REASONS)
    assert covered == set(REJECT_REASONS) - stateful


def test_too_large_uses_the_configured_limit() -> None:
    raw = orjson.dumps(VALID_EVENT)
    assert dec_event(raw, LimitsConfig(max_message_bytes=len(raw))).event_id == "e1"
    assert reason_of(dec_event, raw, LimitsConfig(max_message_bytes=len(raw) - 1)) == "too_large"


def test_too_long_uses_the_configured_limit() -> None:
    assert reason_of(dec_event, orjson.dumps(VALID_EVENT), LimitsConfig(max_field_chars=1)) == "too_long"


def test_far_future_uses_the_configured_limit() -> None:
    raw = with_(VALID_EVENT, ts=NOW + 10)
    assert dec_event(raw).ts == NOW + 10
    assert reason_of(dec_event, raw, LimitsConfig(max_future_s=5)) == "far_future"


ITEM_REJECTS: list[tuple[str, bytes, str]] = [
    ("too_large", b" " * TOO_BIG, "too_large"),
    ("malformed", b"{", "malformed_json"),
    ("NaN", b'{"item_id": NaN}', "malformed_json"),
    ("not an object", b"[1]", "not_an_object"),
    ("version", with_(VALID_ITEM, v=3), "unsupported_version"),
    ("missing item_id", with_(VALID_ITEM, item_id=...), "missing_field"),
    ("missing platform", with_(VALID_ITEM, platform=...), "missing_field"),
    ("missing title", with_(VALID_ITEM, title=...), "missing_field"),
    ("item_id int", with_(VALID_ITEM, item_id=12), "wrong_type"),
    ("title int", with_(VALID_ITEM, title=12), "wrong_type"),
    ("text list", with_(VALID_ITEM, text=["a"]), "wrong_type"),
    ("categories string", with_(VALID_ITEM, categories="drama"), "wrong_type"),
    ("categories null", with_(VALID_ITEM, categories=None), "wrong_type"),
    ("categories with int", with_(VALID_ITEM, categories=["a", 1]), "wrong_type"),
    ("65 categories", with_(VALID_ITEM, categories=["c"] * 65), "wrong_type"),
    ("title too long", with_(VALID_ITEM, title="t" * (LIMITS.max_text_chars + 1)), "too_long"),
    ("title + text too long", with_(VALID_ITEM, title="t" * 15000, text="x" * 5001), "too_long"),
    ("empty item_id", with_(VALID_ITEM, item_id=""), "bad_value"),
    ("empty title", with_(VALID_ITEM, title=" "), "bad_value"),
    ("bad op", with_(VALID_ITEM, op="remove"), "bad_value"),
    ("op as list", with_(VALID_ITEM, op=["delete"]), "bad_value"),
    ("unknown platform", with_(VALID_ITEM, platform="radio"), "unknown_platform"),
    ("delete of unknown platform", with_(VALID_ITEM, op="delete", platform="radio"), "unknown_platform"),
]


@pytest.mark.parametrize("raw, reason", [c[1:] for c in ITEM_REJECTS], ids=[c[0] for c in ITEM_REJECTS])
def test_item_rejects(raw: bytes, reason: str) -> None:
    assert reason_of(dec_item, raw) == reason


IDENTITY_REJECTS: list[tuple[str, bytes, str]] = [
    ("too_large", b"{" + b" " * TOO_BIG + b"}", "too_large"),
    ("malformed", b"{,}", "malformed_json"),
    ("not an object", b'"alice"', "not_an_object"),
    ("version", with_(VALID_IDENTITY, v=True), "unsupported_version"),
    ("missing person_id", with_(VALID_IDENTITY, person_id=...), "missing_field"),
    ("missing user_id", with_(VALID_IDENTITY, user_id=...), "missing_field"),
    ("user_id int", with_(VALID_IDENTITY, user_id=1), "wrong_type"),
    ("person_id too long", with_(VALID_IDENTITY, person_id="p" * 257), "too_long"),
    ("empty person_id", with_(VALID_IDENTITY, person_id=""), "bad_value"),
    ("unknown platform", with_(VALID_IDENTITY, platform="tv"), "unknown_platform"),
]


@pytest.mark.parametrize("raw, reason", [c[1:] for c in IDENTITY_REJECTS], ids=[c[0] for c in IDENTITY_REJECTS])
def test_identity_rejects(raw: bytes, reason: str) -> None:
    assert reason_of(dec_identity, raw) == reason


# ------------------------------------------------------------------------------- compaction keys


@fuzz
@given(platform=st.sampled_from(sorted(PLATFORMS)), user_id=st.text(min_size=1, max_size=256).filter(str.strip))
def test_identity_key_names_one_platform_user(platform: str, user_id: str) -> None:
    """Compaction keeps one record per key: the key must tell the platforms of one user id apart."""
    key = identity_key(platform, user_id)
    assert identity_key_parts(key, platforms=PLATFORMS, limits=LIMITS) == (platform, user_id)
    assert identity_key("shop", user_id) != identity_key("video", user_id)


IDENTITY_KEY_REJECTS: list[tuple[str, bytes | None, str]] = [
    ("no key", None, "missing_field"),
    ("empty key", b"", "missing_field"),
    ("user id alone", b"u1", "bad_value"),
    ("no user id", b"shop:", "bad_value"),
    ("not utf-8", b"shop:\xff", "bad_value"),
    ("unknown platform", b"tv:u1", "unknown_platform"),
    ("user id too long", b"shop:" + b"u" * 257, "too_long"),
]


@pytest.mark.parametrize("key, reason", [c[1:] for c in IDENTITY_KEY_REJECTS], ids=[c[0] for c in IDENTITY_KEY_REJECTS])
def test_identity_key_rejects(key: bytes | None, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        identity_key_parts(key, platforms=PLATFORMS, limits=LIMITS)
    assert info.value.reason == reason and reason in REJECT_REASONS


def test_item_key_names_the_item() -> None:
    assert item_key_id("s-knife".encode(), limits=LIMITS) == "s-knife"
    for key, reason in [(None, "missing_field"), (b" ", "missing_field"), (b"\xff", "bad_value"), (b"i" * 257, "too_long")]:
        with pytest.raises(ValidationError) as info:
            item_key_id(key, limits=LIMITS)
        assert info.value.reason == reason, key


# ------------------------------------------------------------------------------------ deep nesting


@pytest.mark.parametrize("name", list(DECODERS))
@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"context":' + b"[" * 5000],
    ids=["open-lists", "open-objects", "closed-lists", "nested-in-object"],
)
def test_deep_nesting_is_rejected_without_recursion_error(name: str, raw: bytes) -> None:
    roomy = LimitsConfig(max_message_bytes=10_000_000)  # let the bytes reach the parser
    with pytest.raises(ValidationError) as info:
        DECODERS[name](raw, roomy)
    assert info.value.reason == "malformed_json"
    # under the default size limit the same bytes are refused before parsing
    if len(raw) > LIMITS.max_message_bytes:
        assert reason_of(DECODERS[name], raw) == "too_large"


def test_nesting_within_the_parser_limit_is_a_contract_error() -> None:
    deep = [[[[[[[[["x"]]]]]]]]]
    for _ in range(50):
        deep = [deep]
    assert reason_of(dec_event, with_(VALID_EVENT, context={"a": deep})) == "wrong_type"
    assert reason_of(dec_event, with_(VALID_EVENT, ts=deep)) == "wrong_type"


# --------------------------------------------------------------------------------------- fuzzing


def check_decoder(decoder: Callable[..., Any], raw: bytes) -> Any:
    """The decoder returns a value or raises ValidationError with a known reason — nothing else."""
    try:
        result = decoder(raw, LIMITS)
    except ValidationError as exc:
        assert exc.reason in REJECT_REASONS, exc.reason
        return None
    return result


def check_event(event: BehaviorEvent | None) -> None:
    """Invariants of any event the decoder accepts."""
    if event is None:
        return
    assert isinstance(event, BehaviorEvent)
    assert event.platform in PLATFORMS and event.event_type in EVENT_TYPES
    assert isinstance(event.ts, float) and 0.0 <= event.ts <= NOW + LIMITS.max_future_s
    assert event.value is None or (isinstance(event.value, float) and math.isfinite(event.value))
    for s in (event.event_id, event.user_id, event.item_id):
        assert isinstance(s, str) and s.strip() and len(s) <= LIMITS.max_field_chars
    assert event.person_id is None or isinstance(event.person_id, str)
    assert event.context is None or all(isinstance(v, str) for v in event.context.values())
    # an accepted event survives a round trip unchanged
    assert dec_event(encode(event)) == event


@fuzz
@given(raw=st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    check_event(check_decoder(dec_event, raw))
    check_decoder(dec_item, raw)
    check_decoder(dec_identity, raw)


@fuzz
@given(raw=st.binary(max_size=2048).map(lambda b: b'{"ts":' + b))
def test_fuzz_bytes_after_an_object_prefix(raw: bytes) -> None:
    check_event(check_decoder(dec_event, raw))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)


def nested(max_leaves: int) -> st.SearchStrategy[Any]:
    return st.recursive(
        json_scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
        max_leaves=max_leaves,
    )


json_values = nested(25)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@fuzz
@given(value=json_values)
def test_fuzz_arbitrary_json_values(value: Any) -> None:
    raw = dumps(value)
    check_event(check_decoder(dec_event, raw))
    check_decoder(dec_item, raw)
    check_decoder(dec_identity, raw)


EVENT_FIELDS = sorted(set(VALID_EVENT) | {"extra"})
field_values = (
    nested(6)
    | st.sampled_from(["", " ", "shop", "video", "tv", "click", "rating", "x" * 300, "\x00", "é"])
    | st.floats(min_value=-1e12, max_value=1e12)
    | st.sampled_from([NOW, NOW + 300, NOW + 301, -0.0, 0, 1, 2, True, False])
    | st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.none() | st.integers(), max_size=20)
)


@fuzz
@given(
    replace=st.dictionaries(st.sampled_from(EVENT_FIELDS), field_values, max_size=4),
    drop=st.sets(st.sampled_from(EVENT_FIELDS), max_size=3),
)
def test_fuzz_valid_event_with_replaced_fields(replace: dict[str, Any], drop: set[str]) -> None:
    obj = {k: v for k, v in VALID_EVENT.items() if k not in drop}
    obj.update(replace)
    event = check_decoder(dec_event, dumps(obj))
    check_event(event)
    if event is not None:  # what was accepted is what was sent
        assert event.event_id == obj["event_id"] and event.item_id == obj["item_id"]
        assert event.user_id == obj["user_id"] and event.platform == obj["platform"]
        assert event.ts == float(obj["ts"])


ITEM_FIELDS = sorted(set(VALID_ITEM) | {"extra"})


@fuzz
@given(
    replace=st.dictionaries(st.sampled_from(ITEM_FIELDS), field_values | st.just("delete"), max_size=4),
    drop=st.sets(st.sampled_from(ITEM_FIELDS), max_size=3),
)
def test_fuzz_valid_item_with_replaced_fields(replace: dict[str, Any], drop: set[str]) -> None:
    obj = {k: v for k, v in VALID_ITEM.items() if k not in drop}
    obj.update(replace)
    item = check_decoder(dec_item, dumps(obj))
    if item is not None:
        assert isinstance(item, (ItemUpsert, ItemDelete)) and item.platform in PLATFORMS
        assert item.item_id == obj["item_id"]
        if isinstance(item, ItemUpsert):
            assert len(item.title) + len(item.text) <= LIMITS.max_text_chars
            assert all(isinstance(c, str) for c in item.categories)


@fuzz
@given(
    replace=st.dictionaries(st.sampled_from(sorted(VALID_IDENTITY) + ["extra"]), field_values, max_size=3),
    drop=st.sets(st.sampled_from(sorted(VALID_IDENTITY)), max_size=2),
)
def test_fuzz_valid_identity_with_replaced_fields(replace: dict[str, Any], drop: set[str]) -> None:
    obj = {k: v for k, v in VALID_IDENTITY.items() if k not in drop}
    obj.update(replace)
    link = check_decoder(dec_identity, dumps(obj))
    if link is not None:
        assert link == IdentityLink(obj["platform"], obj["user_id"], obj["person_id"])


def test_decode_event_names_the_resolved_person_when_given_a_resolver() -> None:
    from fusionrec.pipeline.resolve import Identity

    ids = Identity()
    ids.link(IdentityLink("shop", "u1", "alice"))
    seen: list[tuple[str, str, str | None]] = []

    def resolve(platform: str, user_id: str, person_id: str | None) -> str:
        seen.append((platform, user_id, person_id))
        return ids.resolve(platform, user_id, person_id)

    unlinked = decode_event(with_(VALID_EVENT, person_id=...), platforms=PLATFORMS, event_types=EVENT_TYPES, limits=LIMITS, now=NOW, resolve=resolve)
    explicit = decode_event(with_(VALID_EVENT), platforms=PLATFORMS, event_types=EVENT_TYPES, limits=LIMITS, now=NOW, resolve=resolve)
    assert unlinked.person_id == "alice" and explicit.person_id == "p1"  # an event's own person wins
    assert seen == [("shop", "u1", None), ("shop", "u1", "p1")]
    assert dec_event(with_(VALID_EVENT, person_id=...)).person_id is None  # no resolver: the field as sent
    assert unlinked == dataclasses.replace(dec_event(with_(VALID_EVENT, person_id=...)), person_id="alice")

"""Versioned message contracts, their orjson codec and their validation.

Every topic carries one JSON object per message with a schema version ``v``.  ``decode_*`` turn raw
bytes into frozen dataclasses or raise :class:`~fusionrec.errors.ValidationError` whose ``reason`` is one
of :data:`REJECT_REASONS`; the worker sends such messages to the dead-letter topic.

    >>> from fusionrec.config import LimitsConfig
    >>> raw = b'{"v":1,"event_id":"e1","ts":1700000000,"platform":"shop","user_id":"u1","item_id":"i9","event_type":"click"}'
    >>> decode_event(raw, platforms={"shop"}, event_types={"click"}, limits=LimitsConfig(), now=1700000001).item_id
    'i9'
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import orjson

from fusionrec.config import LimitsConfig
from fusionrec.policy.context import parse_context
from fusionrec.errors import ValidationError

__all__ = [
    "SCHEMA_VERSION",
    "REJECT_REASONS",
    "BehaviorEvent",
    "ItemUpsert",
    "ItemDelete",
    "IdentityLink",
    "RecItem",
    "Recommendation",
    "DeadLetter",
    "decode_event",
    "decode_item",
    "decode_identity",
    "decode_recommendation",
    "encode",
    "event_fields",
    "identity_key",
    "identity_key_parts",
    "item_key_id",
]

SCHEMA_VERSION = 1

REJECT_REASONS = (
    "too_large",
    "malformed_json",
    "not_an_object",
    "unsupported_version",
    "missing_field",
    "wrong_type",
    "too_long",
    "bad_value",
    "unknown_platform",
    "unknown_event_type",
    "bad_timestamp",
    "far_future",
    "out_of_order",
    "duplicate",
    "unknown_item",
    "processing_error",
)
"""Every reason a message can be dead-lettered for (the ``reason`` field and metric label).

``processing_error`` is the worker's: an unexpected exception while processing that one message."""

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
"""Payloads up to this size travel whole in a dead letter (the default ``limits.max_message_bytes``:
every message of an accepted size keeps its exact bytes)."""
DEAD_LETTER_PREFIX_BYTES = 4 * 1024
"""A larger payload is cut to this prefix (with its size and SHA-256), so a dead letter always fits."""
DEAD_LETTER_DETAIL_CHARS = 1000
"""Longest detail: some details quote a field of the message, which may be as long as the message."""
MAX_EVENT_VALUE = 1e6
"""An event's ``value`` beyond this is refused: a rating's value scales the event's weight,
and a huge one would overflow the person's profile to inf/NaN."""

DEAD_LETTER_MAX_BYTES = 128 * 1024
"""An encoded dead letter never exceeds this (far below Kafka's default 1 MiB ``max.request.size``)."""


@dataclass(frozen=True, slots=True)
class BehaviorEvent:
    """One thing a user did on one platform."""

    event_id: str
    ts: float
    platform: str
    user_id: str
    item_id: str
    event_type: str
    value: float | None = None
    person_id: str | None = None
    context: Mapping[str, str] | None = None
    v: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class ItemUpsert:
    item_id: str
    platform: str
    title: str
    text: str = ""
    categories: tuple[str, ...] = ()
    op: Literal["upsert"] = "upsert"
    v: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class ItemDelete:
    item_id: str
    platform: str
    op: Literal["delete"] = "delete"
    v: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """Platform user id ↔ global person id."""

    platform: str
    user_id: str
    person_id: str
    v: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class RecItem:
    item_id: str
    score: float
    platform: str
    reason: Mapping[str, Any]
    explored: bool = False  # chosen by the exploration policy rather than by score


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Fresh top-K for one person on one platform, produced in answer to one event."""

    person_id: str
    platform: str
    event_id: str
    event_ts: float
    model_version: str
    items: tuple[RecItem, ...]
    produced_at_ms: int
    event_produced_at_ms: int | None = None
    variant: str | None = None  # the person's A/B variant; absent when no experiment runs
    v: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message: why, where it came from, and its bytes (whole when small).

    The encoded letter must fit in one Kafka message whatever it carries: a letter made of a payload
    near the broker's limit, base64-encoded (4/3 larger), would be refused and the rejected message lost
    from sight.  So ``payload_size`` and ``payload_sha256`` are always there, the exact bytes
    (``payload_b64``) only up to :data:`DEAD_LETTER_PAYLOAD_BYTES`, else a prefix of
    :data:`DEAD_LETTER_PREFIX_BYTES` (``payload_prefix_b64``) with ``payload_truncated: true``.
    """

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    payload: bytes = field(repr=False)
    v: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("v", "reason", "topic", "partition", "offset")}
        out["detail"] = _bounded_detail(self.detail)
        out["payload_size"] = len(self.payload)
        out["payload_sha256"] = hashlib.sha256(self.payload).hexdigest()
        if len(self.payload) <= DEAD_LETTER_PAYLOAD_BYTES:
            out["payload_b64"] = base64.b64encode(self.payload).decode()
        else:
            out["payload_prefix_b64"] = base64.b64encode(self.payload[:DEAD_LETTER_PREFIX_BYTES]).decode()
            out["payload_truncated"] = True
        return out


def _bounded_detail(detail: str) -> str:
    if len(detail) <= DEAD_LETTER_DETAIL_CHARS:
        return detail
    return f"{detail[:DEAD_LETTER_DETAIL_CHARS]}... ({len(detail)} chars)"


def event_fields(event: BehaviorEvent) -> dict[str, Any]:
    """The event as a plain dict, ``None`` fields left out (cheaper than ``dataclasses.asdict``)."""
    return {name: value for name in _EVENT_FIELDS if (value := getattr(event, name)) is not None}


def recommendation_fields(rec: Recommendation) -> dict[str, Any]:
    out = {name: value for name in _REC_FIELDS if (value := getattr(rec, name)) is not None}
    out["items"] = [
        {"item_id": i.item_id, "score": i.score, "platform": i.platform, "reason": i.reason, "explored": i.explored}
        for i in rec.items
    ]
    return out


_EVENT_FIELDS = tuple(f.name for f in fields(BehaviorEvent))
_REC_FIELDS = tuple(f.name for f in fields(Recommendation) if f.name != "items")


def encode(message: Any) -> bytes:
    """orjson bytes of a contract dataclass (or DeadLetter), ``None`` fields left out."""
    if isinstance(message, DeadLetter):
        return orjson.dumps(message.to_json())
    if isinstance(message, BehaviorEvent):
        return orjson.dumps(event_fields(message))
    if isinstance(message, Recommendation):
        return orjson.dumps(recommendation_fields(message))
    return orjson.dumps(_drop_none(asdict(message)))


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_drop_none(v) for v in obj]
    return obj


# --- keys -----------------------------------------------------------------------------------------
# The catalog topics are compacted: a key must name exactly one thing, or compaction drops the links of
# a user id that exists on several platforms.  Items are keyed by item id (unique across platforms).


def identity_key(platform: str, user_id: str) -> bytes:
    """The key of an identity link (and of its tombstone): ``<platform>:<user_id>``."""
    return f"{platform}:{user_id}".encode()


def identity_key_parts(key: bytes | None, *, platforms: Collection[str], limits: LimitsConfig) -> tuple[str, str]:
    """``(platform, user_id)`` of an identity key; platform names cannot contain ``:``, so the first one splits."""
    if not key:
        raise ValidationError("missing_field", "a tombstone (null value) needs <platform>:<user_id> as its key")
    try:
        platform, sep, user_id = key.decode().partition(":")
    except UnicodeDecodeError:
        raise ValidationError("bad_value", "an identity key must be UTF-8 <platform>:<user_id>") from None
    if not sep or not user_id.strip():
        raise ValidationError("bad_value", f"an identity key must be <platform>:<user_id>, got {key[:100]!r}")
    if platform not in platforms:
        raise ValidationError("unknown_platform", f"platform {platform[:100]!r} not in {sorted(platforms)}")
    if len(user_id) > limits.max_field_chars:
        raise ValidationError("too_long", f"user id has {len(user_id)} chars > limit {limits.max_field_chars}")
    return platform, user_id


def item_key_id(key: bytes | None, *, limits: LimitsConfig) -> str:
    """The item id an items-topic key names (a tombstone carries nothing else)."""
    try:
        item_id = (key or b"").decode()
    except UnicodeDecodeError:
        raise ValidationError("bad_value", "an item key must be the UTF-8 item id") from None
    if not item_id.strip():
        raise ValidationError("missing_field", "a tombstone (null value) needs the item id as its key")
    if len(item_id) > limits.max_field_chars:
        raise ValidationError("too_long", f"item id has {len(item_id)} chars > limit {limits.max_field_chars}")
    return item_id


# --- decoding -------------------------------------------------------------------------------------


def _load_object(raw: bytes, limits: LimitsConfig) -> dict[str, Any]:
    if len(raw) > limits.max_message_bytes:
        raise ValidationError("too_large", f"{len(raw)} bytes > limit {limits.max_message_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("malformed_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise ValidationError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ValidationError("unsupported_version", f"v={version!r}; this worker reads v={SCHEMA_VERSION}")
    return obj


def _string(obj: Mapping[str, Any], name: str, limit: int, *, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ValidationError("missing_field", f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise ValidationError("wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ValidationError("bad_value", f"'{name}' must not be empty")
    if len(value) > limit:
        raise ValidationError("too_long", f"'{name}' has {len(value)} chars > limit {limit}")
    return value


def _number(obj: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ValidationError("missing_field", f"'{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError("wrong_type", f"'{name}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValidationError("bad_value", f"'{name}' must be finite")
    return float(value)


def _platform(obj: Mapping[str, Any], platforms: Collection[str], limits: LimitsConfig) -> str:
    platform = _string(obj, "platform", limits.max_field_chars)
    assert platform is not None
    if platform not in platforms:
        raise ValidationError("unknown_platform", f"platform {platform!r} not in {sorted(platforms)}")
    return platform


def _context(obj: Mapping[str, Any], limits: LimitsConfig) -> dict[str, str] | None:
    ctx = obj.get("context")
    if ctx is None:
        return None
    if not isinstance(ctx, dict) or len(ctx) > 16:
        raise ValidationError("wrong_type", "'context' must be an object of at most 16 string fields")
    out = {str(k): s for k in ctx if (s := _string(ctx, k, limits.max_field_chars)) is not None}
    parse_context(out, max_chars=limits.max_field_chars)  # hour, weekday and device must make sense
    return out


def decode_event(
    raw: bytes,
    *,
    platforms: Collection[str],
    event_types: Collection[str],
    limits: LimitsConfig,
    now: float,
    resolve: Callable[[str, str, str | None], str] | None = None,
) -> BehaviorEvent:
    """Decode and validate one behaviour event (stateless checks only).

    ``resolve(platform, user_id, person_id)``, when given, names the event's person: the event is built
    with it as ``person_id`` (one object where a worker would otherwise build a second).
    """
    obj = _load_object(raw, limits)
    ts = _number(obj, "ts", required=True)
    assert ts is not None
    if ts < 0:
        raise ValidationError("bad_timestamp", f"ts={ts} is before 1970")
    if ts > now + limits.max_future_s:
        raise ValidationError("far_future", f"ts={ts} is {ts - now:.0f}s ahead of now")
    event_type = _string(obj, "event_type", limits.max_field_chars)
    if event_type not in event_types:
        raise ValidationError("unknown_event_type", f"event_type {event_type!r} not in {sorted(event_types)}")
    value = _number(obj, "value", required=False)
    if value is not None and abs(value) > MAX_EVENT_VALUE:
        raise ValidationError("bad_value", f"'value' must be within ±{MAX_EVENT_VALUE:g}, got {value:g}")
    event_id = _string(obj, "event_id", limits.max_field_chars)
    platform = _platform(obj, platforms, limits)
    user_id = _string(obj, "user_id", limits.max_field_chars)
    item_id = _string(obj, "item_id", limits.max_field_chars)
    person_id = _string(obj, "person_id", limits.max_field_chars, required=False)
    context = _context(obj, limits)
    if resolve is not None:
        person_id = resolve(platform, user_id, person_id)  # type: ignore[arg-type]
    return BehaviorEvent(event_id, ts, platform, user_id, item_id, event_type, value, person_id, context)  # type: ignore[arg-type]


def decode_item(raw: bytes, *, platforms: Collection[str], limits: LimitsConfig) -> ItemUpsert | ItemDelete:
    obj = _load_object(raw, limits)
    op = obj.get("op", "upsert")
    item_id = _string(obj, "item_id", limits.max_field_chars)
    platform = _platform(obj, platforms, limits)
    if op == "delete":
        return ItemDelete(item_id=item_id, platform=platform)  # type: ignore[arg-type]
    if op != "upsert":
        raise ValidationError("bad_value", f"op must be 'upsert' or 'delete', got {op!r}")
    title = _string(obj, "title", limits.max_text_chars)
    text = _string(obj, "text", limits.max_text_chars, required=False) or ""
    cats = obj.get("categories", [])
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats) or len(cats) > 64:
        raise ValidationError("wrong_type", "'categories' must be a list of at most 64 strings")
    if len(title or "") + len(text) > limits.max_text_chars:
        raise ValidationError("too_long", f"title + text exceed {limits.max_text_chars} chars")
    return ItemUpsert(
        item_id=item_id,  # type: ignore[arg-type]
        platform=platform,
        title=title,  # type: ignore[arg-type]
        text=text,
        categories=tuple(c[: limits.max_field_chars] for c in cats),
    )


def decode_identity(raw: bytes, *, platforms: Collection[str], limits: LimitsConfig) -> IdentityLink:
    obj = _load_object(raw, limits)
    return IdentityLink(
        platform=_platform(obj, platforms, limits),
        user_id=_string(obj, "user_id", limits.max_field_chars),  # type: ignore[arg-type]
        person_id=_string(obj, "person_id", limits.max_field_chars),  # type: ignore[arg-type]
    )


def decode_recommendation(raw: bytes) -> Recommendation:
    """Parse a recommendation message (consumers of the recommendations topic use this)."""
    obj = orjson.loads(raw)
    items = tuple(RecItem(**item) for item in obj.pop("items"))
    return Recommendation(items=items, **obj)

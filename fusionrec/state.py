"""What a worker keeps about one person, and its compact binary form (the changelog value).

Items and event ids are kept as 64-bit hashes (``fusionrec.hashing``), profile directions as float16
with a float32 length: a person with two platform profiles at 384 dimensions, 50 events and 50
consumed items packs into about 2.9 KB, against ~26 KB for the JSON state it replaces.  The hash lists
are plain Python lists while a batch works on them: the lists are short, and a membership test or an
append on a list costs a fraction of a numpy call.

The float16 rounding is part of every update (``Profile.set_vector``), not of packing: the state
after an event is the same whether the person was packed in between or not, so a worker that
restarted from the changelog and one that ran straight through end in the same state, whatever
their micro-batches were.

    >>> import numpy as np
    >>> s = PersonState.new("p1")
    >>> s.profiles["shop"] = Profile.empty(4)
    >>> s.profiles["shop"].set_vector(np.array([3, 4, 0, 0], np.float32))
    >>> remember(s.consumed, 7, 10)
    >>> t = PersonState.from_bytes("p1", s.to_bytes())
    >>> t.profiles["shop"].norm, t.consumed, t.profiles["shop"].unit.tolist()
    (5.0, [7], [0.60009765625, 0.7998046875, 0.0, 0.0])
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fusionrec.errors import DecodeError

__all__ = ["Profile", "PersonState", "STATE_FORMAT", "remember", "pack", "unpack", "profile_count"]

Vector = npt.NDArray[np.float32]

STATE_FORMAT = 1
_MAGIC = b"F"
_HEAD = struct.Struct("<cBHdHHBB")  # magic, format, dim, last_ts, events, consumed, seq, profiles
_PROFILE = struct.Struct("<fddIB")  # norm, mass, ts, n, recent


def remember(hashes: list[int], h: int, limit: int) -> None:
    """Move ``h`` to (or add it at) the end of ``hashes``; drop the oldest beyond ``limit``."""
    if h in hashes:
        hashes.remove(h)
    hashes.append(h)
    if len(hashes) > limit:
        del hashes[: len(hashes) - limit]


def _hashes(raw: bytes, at: int, count: int) -> list[int]:
    end = at + 8 * count
    if end > len(raw):  # a short slice would cast to fewer hashes, or fail with a TypeError
        raise ValueError(f"{count} hashes at byte {at} run past the end ({len(raw)} bytes)")
    return memoryview(raw)[at:end].cast("Q").tolist()


@dataclass(slots=True)
class Profile:
    """One platform profile: a time-decayed, event-weighted sum of item vectors, as direction × length."""

    unit: npt.NDArray[np.float16]  # unit direction, zeros while the length is 0
    norm: float  # length of the sum (a float32 value)
    mass: float  # decayed sum of |weights|: the confidence of the profile
    ts: float  # time of the newest event in it
    n: int = 0  # events folded in
    recent: list[int] = field(default_factory=list)  # item hashes, oldest first

    @classmethod
    def empty(cls, dim: int, ts: float = float("-inf")) -> Profile:
        return cls(np.zeros(dim, np.float16), 0.0, 0.0, ts)

    @property
    def vec(self) -> Vector:
        return self.unit.astype(np.float32) * np.float32(self.norm)

    def set_vector(self, vec: Vector) -> None:
        """Store ``vec`` as direction and length, rounded as the packed form holds them."""
        norm = np.float32(np.sqrt(np.dot(vec, vec)))
        self.norm = float(norm)
        self.unit = (vec / norm).astype(np.float16) if norm > 0 else np.zeros(len(vec), np.float16)


@dataclass(slots=True)
class PersonState:
    """Everything the worker keeps about one person (the person id is the key, not part of the value)."""

    person_id: str
    profiles: dict[str, Profile]
    consumed: list[int]  # item hashes, oldest first, bounded; an item consumed again moves to the end
    recent_events: list[int]  # event-id hashes, oldest first, bounded (the duplicate check)
    last_ts: float = float("-inf")
    seq: list[int] = field(default_factory=list)  # recent positive items, all platforms, oldest first

    @classmethod
    def new(cls, person_id: str) -> PersonState:
        return cls(person_id, {}, [], [])

    def to_bytes(self) -> bytes:
        dim = next((len(p.unit) for p in self.profiles.values()), 0)
        profiles = [(name, p.norm, p.mass, p.ts, p.n, p.recent, p.unit.astype("<f2").tobytes()) for name, p in self.profiles.items()]
        return pack(dim, self.last_ts, self.recent_events, self.consumed, self.seq, profiles)

    @classmethod
    def from_bytes(cls, person_id: str, raw: bytes) -> PersonState:
        try:
            return _unpack(person_id, raw)
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise DecodeError("bad_state", f"person {person_id!r}: the stored state does not decode: {exc}") from None


def profile_count(raw: bytes) -> int:
    """How many platform profiles a packed state holds (from its header alone)."""
    return int(_HEAD.unpack_from(raw, 0)[7])


def unpack(raw: bytes) -> tuple[float, list[int], list[int], list[int], list[tuple[str, float, float, float, int, list[int], bytes]]]:
    """``(last_ts, events, consumed, seq, profiles)``; each profile ``(name, norm, mass, ts, n, recent,
    float16 direction bytes)`` — the packed form's parts, for callers that assemble many people at once.
    Bytes that are not a packed state raise ``ValueError`` (or ``UnicodeDecodeError``, a subclass)."""
    try:
        return _unpack_parts(raw)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"truncated: {exc}") from None


def _unpack_parts(raw: bytes) -> tuple[float, list[int], list[int], list[int], list[tuple[str, float, float, float, int, list[int], bytes]]]:
    magic, fmt, dim, last_ts, n_events, n_consumed, n_seq, n_profiles = _HEAD.unpack_from(raw, 0)
    if magic != _MAGIC or fmt != STATE_FORMAT:
        raise ValueError(f"format {magic!r}/{fmt} is not {_MAGIC!r}/{STATE_FORMAT}")
    at = _HEAD.size
    events = _hashes(raw, at, n_events)
    at += 8 * n_events
    consumed = _hashes(raw, at, n_consumed)
    at += 8 * n_consumed
    seq = _hashes(raw, at, n_seq)
    at += 8 * n_seq
    profiles = []
    for _ in range(n_profiles):
        size = raw[at]
        name = raw[at + 1 : at + 1 + size].decode()
        at += 1 + size
        norm, mass, ts, n, n_recent = _PROFILE.unpack_from(raw, at)
        at += _PROFILE.size
        recent = _hashes(raw, at, n_recent)
        at += 8 * n_recent
        if at + 2 * dim > len(raw):
            raise ValueError(f"profile {name!r} runs past the end ({len(raw)} bytes)")
        profiles.append((name, norm, mass, ts, n, recent, raw[at : at + 2 * dim]))
        at += 2 * dim
    if at != len(raw):
        raise ValueError(f"{len(raw) - at} trailing bytes")
    return last_ts, events, consumed, seq, profiles


def pack(
    dim: int,
    last_ts: float,
    events: list[int],
    consumed: list[int],
    seq: list[int],
    profiles: list[tuple[str, float, float, float, int, list[int], bytes]],
) -> bytes:
    """The inverse of :func:`unpack`."""
    parts = [
        _HEAD.pack(_MAGIC, STATE_FORMAT, dim, last_ts, len(events), len(consumed), len(seq), len(profiles)),
        array("Q", events).tobytes(),
        array("Q", consumed).tobytes(),
        array("Q", seq).tobytes(),
    ]
    for name, norm, mass, ts, n, recent, unit in profiles:
        raw = name.encode()
        parts += [bytes((len(raw),)), raw, _PROFILE.pack(norm, mass, ts, n, len(recent)), array("Q", recent).tobytes(), unit]
    return b"".join(parts)


def _unpack(person_id: str, raw: bytes) -> PersonState:
    last_ts, events, consumed, seq, parts = unpack(raw)
    profiles = {
        name: Profile(np.frombuffer(unit, "<f2"), norm, mass, ts, n, recent) for name, norm, mass, ts, n, recent, unit in parts
    }
    return PersonState(person_id, profiles, consumed, events, last_ts, seq)

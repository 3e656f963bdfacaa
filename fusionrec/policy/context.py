"""Event context (hour, weekday, device) → features → per-platform fusion weights.

What a person wants from their cross-platform history depends on the moment: the video platform's
history may matter more on a TV in the evening, the shop's on a phone at lunch.  The context of an
event becomes a small feature vector, and a learned matrix ``M`` (platforms × features) turns it into a
multiplicative adjustment of each platform's base fusion weight::

    w_p = base_p · exp(clip(M_p · x)),   then rescaled so that Σ w_p = Σ base_p

With ``M = 0`` (the initial state) the weights are exactly the base weights, so wiring this in changes
nothing until something is learned; the clip bounds what a bad ``M`` can do, and the rescaling means
context only moves weight between platforms, never inflates the whole profile.

Features (:func:`feature_names`): a bias, hour and weekday on the unit circle (23:00 is next to 00:00,
Sunday next to Monday), a one-hot device over :data:`DEVICES` plus ``other``, and a one-hot of the
target platform.  A missing field contributes zeros, i.e. "no information", not "midnight".

    >>> ctx = parse_context({"hour": "21", "weekday": "fri", "device": "TV"})
    >>> ctx
    EventContext(hour=21, weekday=4, device='tv')
    >>> x = context_features(ctx, "video", ("shop", "video"))
    >>> modulated_weights({"shop": 1.0, "video": 1.0}, x, zero_matrix(("shop", "video")), ("shop", "video"))
    {'shop': 1.0, 'video': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.errors import ValidationError

__all__ = [
    "DEVICES",
    "WEEKDAYS",
    "EventContext",
    "parse_context",
    "feature_names",
    "feature_dim",
    "context_features",
    "zero_matrix",
    "modulated_weights",
    "ContextGate",
]

DEVICES = ("mobile", "desktop", "tablet", "tv")
"""Devices with their own feature; any other device string maps to ``other``."""

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names (Monday = 0, as ``datetime.weekday()``); full names are accepted too."""

MAX_LOGIT = 4.0
"""Largest |M·x|: a context can scale a platform's weight by at most e⁴ ≈ 55 either way."""


@dataclass(frozen=True, slots=True)
class EventContext:
    """The validated context of one event; every field is optional."""

    hour: int | None = None  # local hour of day, 0..23
    weekday: int | None = None  # 0 = Monday .. 6 = Sunday
    device: str | None = None  # lower-case device kind, e.g. "mobile"


def _reject(reason: str, detail: str) -> ValidationError:
    return ValidationError(reason, f"context: {detail}")


def _integer(raw: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    """An int or a decimal string within ``[low, high]``; events carry context as strings."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _reject("wrong_type", f"'{key}' must be an integer or a decimal string, got {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 3:
            raise _reject("bad_value", f"'{key}' must be an integer in [{low}, {high}], got {value[:20]!r}")
        value = int(text)
    if not low <= value <= high:
        raise _reject("bad_value", f"'{key}' must be in [{low}, {high}], got {value}")
    return value


_WEEKDAY_NAMES = {
    **{short: i for i, short in enumerate(WEEKDAYS)},
    **{
        full: i
        for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
    },
}


def _weekday(raw: Mapping[str, Any]) -> int | None:
    """0..6 as a number or decimal string, or a weekday name ("fri", "Friday")."""
    value = raw.get("weekday")
    if isinstance(value, str) and not value.strip().isdigit():
        day = _WEEKDAY_NAMES.get(value.strip().lower())
        if day is None:
            raise _reject("bad_value", f"'weekday' {value[:20]!r} is not 0..6 or a weekday name")
        return day
    return _integer(raw, "weekday", 0, 6)


def parse_context(raw: Mapping[str, Any] | None, *, max_chars: int = 256) -> EventContext | None:
    """Validate an event's ``context`` and return its typed form; ``None`` stays ``None``.

    Raises :class:`~fusionrec.errors.ValidationError` with reason ``wrong_type`` (not a mapping, a field
    of the wrong type), ``bad_value`` (out of range, unknown weekday, empty device) or ``too_long``.
    Keys other than ``hour``, ``weekday`` and ``device`` are ignored: the context object is open to
    other uses.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _reject("wrong_type", f"must be an object, got {type(raw).__name__}")
    device = raw.get("device")
    if device is not None:
        if not isinstance(device, str):
            raise _reject("wrong_type", f"'device' must be a string, got {type(device).__name__}")
        if len(device) > max_chars:
            raise _reject("too_long", f"'device' has {len(device)} chars > limit {max_chars}")
        device = device.strip().lower()
        if not device:
            raise _reject("bad_value", "'device' must not be empty")
    return EventContext(hour=_integer(raw, "hour", 0, 23), weekday=_weekday(raw), device=device)


def feature_names(platforms: Sequence[str]) -> tuple[str, ...]:
    """The meaning of each feature, in order (for logs, reasons and checkpoints)."""
    return (
        "bias",
        "hour_sin",
        "hour_cos",
        "weekday_sin",
        "weekday_cos",
        *(f"device={d}" for d in (*DEVICES, "other")),
        *(f"target={p}" for p in platforms),
    )


def feature_dim(platforms: Sequence[str]) -> int:
    return 5 + len(DEVICES) + 1 + len(platforms)


def context_features(ctx: EventContext | None, target: str, platforms: Sequence[str]) -> npt.NDArray[np.float32]:
    """The feature vector of one event (see :func:`feature_names`); an unknown target gets no target feature."""
    x = np.zeros(feature_dim(platforms), dtype=np.float32)
    x[0] = 1.0
    if ctx is not None:
        if ctx.hour is not None:
            angle = 2.0 * math.pi * ctx.hour / 24.0
            x[1], x[2] = math.sin(angle), math.cos(angle)
        if ctx.weekday is not None:
            angle = 2.0 * math.pi * ctx.weekday / 7.0
            x[3], x[4] = math.sin(angle), math.cos(angle)
        if ctx.device is not None:
            slot = DEVICES.index(ctx.device) if ctx.device in DEVICES else len(DEVICES)
            x[5 + slot] = 1.0
    if target in platforms:
        x[5 + len(DEVICES) + 1 + list(platforms).index(target)] = 1.0
    return x


def zero_matrix(platforms: Sequence[str]) -> npt.NDArray[np.float32]:
    """The initial (neutral) modulation matrix: platforms × features, all zeros."""
    return np.zeros((len(platforms), feature_dim(platforms)), dtype=np.float32)


def modulated_weights(
    base: Mapping[str, float],
    features: npt.ArrayLike,
    matrix: npt.ArrayLike,
    platforms: Sequence[str],
) -> dict[str, float]:
    """Per-platform fusion weights adjusted by the context; positive wherever the base weight is.

    ``base`` maps platform → weight (missing = 1.0, as in fusion); a base weight of 0 switches a
    platform off and stays 0.  Non-finite entries of ``matrix`` count as 0, so a corrupt matrix
    degrades to the base weights instead of poisoning every profile with NaN.
    """
    x = np.asarray(features, dtype=np.float64).reshape(-1)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (len(platforms), x.shape[0]):
        raise ValueError(f"matrix must have shape ({len(platforms)}, {x.shape[0]}), got {m.shape}")
    b = np.array([float(base.get(p, 1.0)) for p in platforms], dtype=np.float64)
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise ValueError(f"base weights must be finite and >= 0, got {dict(zip(platforms, b.tolist(), strict=True))}")
    with np.errstate(over="ignore", invalid="ignore"):  # huge entries: inf - inf = NaN, mapped to 0 below
        raw = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0) @ np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    logits = np.clip(np.nan_to_num(raw, nan=0.0), -MAX_LOGIT, MAX_LOGIT)
    w = b * np.exp(logits)
    total = w.sum()
    if total > 0:
        w *= b.sum() / total
    return {p: float(v) for p, v in zip(platforms, w, strict=True)}


GATE_FEATURES = feature_dim(())
"""Context features of the gate: bias, hour, weekday and device (the target platform picks the matrix)."""


class ContextGate:
    """Learned, context-aware fusion weights: one matrix per target platform, rows per source platform.

    ``gate(target, ctx, alphas)`` rescales each source platform's base weight ``α_p`` by
    ``exp(clip(M[target][p] · x))`` and renormalises to the same total (see :func:`modulated_weights`);
    ``learn`` takes one gradient step, per positive event, on the attention-weighted cosine between
    the platform profiles and the item the person actually chose::

        a_p = w_p / Σ w,   J = Σ_p a_p · cos(û_p, v),   ∂J/∂logit_p = a_p · (cos_p − J)

    so the platforms whose profile predicted the chosen item gain weight in that context.  Matrices
    start at zero: until something is learned the weights are exactly the base weights.  Like the
    learner's weights, ``learn`` updates the live matrices and ranking reads the copy made by
    ``publish`` (``gate(..., live=False)``), so one micro-batch is ranked with one model.
    """

    def __init__(self, lr: float = 0.05) -> None:
        self.lr = lr
        self.rows: dict[str, dict[str, npt.NDArray[np.float64]]] = {}  # live: target -> source -> (F,)
        self.published: dict[str, dict[str, npt.NDArray[np.float64]]] = {}
        self.updates = 0

    def publish(self) -> None:
        self.published = {t: {p: row.copy() for p, row in rows.items()} for t, rows in self.rows.items()}

    @staticmethod
    def features(ctx: EventContext | None) -> npt.NDArray[np.float64]:
        return context_features(ctx, "", ()).astype(np.float64)

    def logits(
        self, target: str, sources: Sequence[str], x: npt.NDArray[np.float64], *, live: bool = False
    ) -> npt.NDArray[np.float64]:
        rows = (self.rows if live else self.published).get(target, {})
        out = np.array([float(rows[p] @ x) if p in rows else 0.0 for p in sources])
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), -MAX_LOGIT, MAX_LOGIT)

    def gate(
        self, target: str, ctx: EventContext | None, alphas: Mapping[str, float], *, live: bool = False
    ) -> dict[str, float]:
        """The context-modulated weights; unchanged with fewer than two sources or any negative weight."""
        sources = list(alphas)
        base = np.array([alphas[p] for p in sources], dtype=np.float64)
        known = target in (self.rows if live else self.published)
        if len(sources) < 2 or not known or np.any(base < 0) or not np.all(np.isfinite(base)):
            return dict(alphas)
        w = base * np.exp(self.logits(target, sources, self.features(ctx), live=live))
        total = w.sum()
        if total > 0:
            w *= base.sum() / total
        return {p: float(v) for p, v in zip(sources, w, strict=True)}

    def learn(self, target: str, ctx: EventContext | None, alphas: Mapping[str, float], cosines: Mapping[str, float]) -> None:
        """One step towards the sources whose profile was closest to the chosen item."""
        sources = [p for p in alphas if p in cosines]
        if len(sources) < 2:
            return
        weights = self.gate(target, ctx, {p: alphas[p] for p in sources}, live=True)
        w = np.array([weights[p] for p in sources])
        if np.any(w < 0) or w.sum() <= 0:
            return
        a = w / w.sum()
        s = np.array([cosines[p] for p in sources])
        grad = a * (s - float(a @ s))
        x = self.features(ctx)
        rows = self.rows.setdefault(target, {})
        for p, g in zip(sources, grad, strict=True):
            row = rows.setdefault(p, np.zeros(GATE_FEATURES))
            row += self.lr * g * x
        self.updates += 1

    # ------------------------------------------------------------------ batches (the hot path)

    def matrix(self, target: str, sources: Sequence[str], *, live: bool = False) -> npt.NDArray[np.float64] | None:
        """``(len(sources), GATE_FEATURES)``: the target's rows in ``sources`` order (zeros where a
        source has none); None when nothing was learned for the target."""
        rows = (self.rows if live else self.published).get(target)
        if rows is None:
            return None
        out = np.zeros((len(sources), GATE_FEATURES))
        for j, p in enumerate(sources):
            row = rows.get(p)
            if row is not None:
                out[j] = row
        return out

    def gate_batch(
        self, target: str, sources: Sequence[str], x: npt.NDArray[np.float64], alphas: npt.NDArray[np.float64], present: npt.NDArray[np.bool_], *, live: bool = False
    ) -> npt.NDArray[np.float64]:
        """:meth:`gate` for ``W`` requests at once: ``x`` ``(W, F)``, ``alphas`` and ``present`` ``(W, P)``
        over ``sources``; absent sources keep their (unused) alpha."""
        m = self.matrix(target, sources, live=live)
        if m is None:
            return alphas
        base = np.where(present, alphas, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            logits = np.clip(np.nan_to_num(x @ np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0).T, nan=0.0), -MAX_LOGIT, MAX_LOGIT)
            w = base * np.exp(logits)
            total = w.sum(axis=1, keepdims=True)
            w = np.where(total > 0, w * base.sum(axis=1, keepdims=True) / np.where(total > 0, total, 1.0), w)
        ok = (present.sum(axis=1) >= 2) & ~np.any(present & ((alphas < 0) | ~np.isfinite(alphas)), axis=1)
        return np.where(ok[:, None] & present, w, alphas)

    def learn_batch(
        self, target: str, sources: Sequence[str], x: npt.NDArray[np.float64], alphas: npt.NDArray[np.float64], cosines: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]
    ) -> None:
        """One summed step over ``W`` events of ``target`` (see :meth:`learn`); rows with fewer than two
        present sources learn nothing."""
        w = np.where(present, self.gate_batch(target, sources, x, alphas, present, live=True), 0.0)
        total = w.sum(axis=1)
        ok = (present.sum(axis=1) >= 2) & ~np.any(w < 0, axis=1) & (total > 0)
        if not ok.any():
            return
        a = w[ok] / total[ok, None]
        s = np.where(present[ok], cosines[ok], 0.0)
        grad = a * (s - (a * s).sum(axis=1, keepdims=True))
        step = self.lr * grad.T @ x[ok]  # (P, F)
        rows = self.rows.setdefault(target, {})
        touched = present[ok].any(axis=0)
        for j, p in enumerate(sources):
            if touched[j]:
                row = rows.setdefault(p, np.zeros(GATE_FEATURES))
                row += step[j]
        self.updates += int(ok.sum())

    def state(self) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, str]]:
        """Tensors (``context.<target>.<source>``) and metadata for a checkpoint."""
        import json

        tensors = {f"context.{t}.{p}": row.copy() for t, rows in self.rows.items() for p, row in rows.items()}
        keys = [[t, p] for t, rows in self.rows.items() for p in rows]
        return tensors, {"context_keys": json.dumps(keys), "context_updates": str(self.updates)}

    def load(self, tensors: Mapping[str, npt.NDArray[np.float64]], meta: Mapping[str, str]) -> None:
        import json

        self.rows = {}
        for t, p in json.loads(meta.get("context_keys", "[]")):
            row = np.asarray(tensors[f"context.{t}.{p}"], dtype=np.float64)
            if row.shape == (GATE_FEATURES,):
                self.rows.setdefault(t, {})[p] = row.copy()
        self.updates = int(meta.get("context_updates", "0"))
        self.publish()

"""Open-loop latency of one offered-rate step: receipt time minus scheduled send time, per event.

An event's clock starts when the publisher was *scheduled* to send it (``t_start + i / rate``), not when
it was sent: a publisher that falls behind, a broker that queues or a worker that lags all show as
latency, and nothing is hidden by the sender slowing down (coordinated omission).  The clock stops
when the bench's consumer *receives* the recommendation, not when the worker says it produced it.

An event never answered has infinite latency: it takes part in the percentiles (so 0.5 % of events
lost make p99 infinite) and lowers the answered fraction.  Percentiles are nearest-rank: p99 is the
smallest latency that at least 99 % of the events do not exceed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "SLO_P99_MS",
    "SLO_ANSWERED",
    "LatencyFigures",
    "latencies_ms",
    "nearest_rank",
    "step_figures",
    "step_passes",
    "certainly_fails",
]

SLO_P99_MS = 1000.0
"""A step passes when p99 of its events is at most this..."""
SLO_ANSWERED = 0.999
"""...and at least this share of its events were answered."""


@dataclass(frozen=True)
class LatencyFigures:
    published: int
    answered: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def answered_fraction(self) -> float:
        return self.answered / self.published if self.published else 1.0

    def as_json(self) -> dict[str, Any]:
        """Infinite percentiles (unanswered events) become ``null`` (JSON has no infinity)."""
        return {
            "published": self.published,
            "answered": self.answered,
            "answered_fraction": round(self.answered_fraction, 6),
            "p50_ms": _ms(self.p50_ms),
            "p95_ms": _ms(self.p95_ms),
            "p99_ms": _ms(self.p99_ms),
            "max_ms": _ms(self.max_ms),
        }


def _ms(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 1)


def latencies_ms(scheduled_ms: np.ndarray, received_ms: np.ndarray) -> np.ndarray:
    """Per event ``received - scheduled``; ``inf`` where nothing was received (``received`` is NaN)."""
    lat = np.asarray(received_ms, dtype=np.float64) - np.asarray(scheduled_ms, dtype=np.float64)
    lat[np.isnan(lat)] = np.inf
    return lat


def nearest_rank(sorted_values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ascending ``sorted_values`` by nearest rank (``inf`` stays ``inf``)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * n))
    return float(sorted_values[rank - 1])


def step_figures(scheduled_ms: np.ndarray, received_ms: np.ndarray) -> LatencyFigures:
    """Percentiles and answered count of the events of one step (one row per published event)."""
    lat = np.sort(latencies_ms(scheduled_ms, received_ms))
    return LatencyFigures(
        published=len(lat),
        answered=int(np.isfinite(lat).sum()),
        p50_ms=nearest_rank(lat, 50),
        p95_ms=nearest_rank(lat, 95),
        p99_ms=nearest_rank(lat, 99),
        max_ms=float(lat[-1]) if len(lat) else math.nan,
    )


def step_passes(fig: LatencyFigures, *, p99_ms: float = SLO_P99_MS, answered: float = SLO_ANSWERED) -> bool:
    """The sustained-rate criterion: p99 ≤ 1 s and ≥ 99.9 % of the events answered."""
    return fig.published > 0 and fig.p99_ms <= p99_ms and fig.answered_fraction >= answered


def certainly_fails(
    scheduled_ms: np.ndarray, received_ms: np.ndarray, now_ms: float, planned: int, *, p99_ms: float = SLO_P99_MS
) -> bool:
    """True once the step cannot pass whatever happens next: more than 1 % of its ``planned`` events are
    already known to take longer than ``p99_ms`` (answered late, or still unanswered although scheduled
    more than ``p99_ms`` ago).  Stopping such a step early keeps the backlog, and the drain, short."""
    due = scheduled_ms <= now_ms - p99_ms
    lat = np.asarray(received_ms) - np.asarray(scheduled_ms)
    late = int((due & ~(lat <= p99_ms)).sum())  # NaN (unanswered) compares False: late when due
    late += int(((~due) & (lat > p99_ms)).sum())
    allowed = planned - math.ceil(0.99 * planned)  # nearest-rank p99 stays ≤ p99_ms with at most this many
    return late > allowed

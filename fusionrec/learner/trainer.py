"""The fitted part: per-platform feature weights, learned test-then-train by sampled softmax + Adagrad.

For a sample of positive events, the features of the true item and of sampled items of its platform
are computed from the person's state just *before* the event, with the published statistics (what
would have ranked it), and one Adagrad step on the sampled-softmax loss moves the *live* weights:

    s_j = w · f_j − log(S·q_j) for the sampled j,   loss = −log softmax(s)_true

Negatives are drawn once per training call and platform, half uniformly and half by long-term
popularity (the hard ones); ``−log(S·q_j)`` corrects for the draw so the step follows the softmax over
the whole catalog.  The ranker reads the weights published with the statistics (``learner.publish``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusionrec.learner.model import INITIAL_WEIGHTS, N_FEATURES

__all__ = ["Example", "Adagrad", "negative_draw", "INITIAL_GRAD_SQ"]

INITIAL_GRAD_SQ = 1e-6
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class Example:
    """A positive event to learn from, frozen as the person was just before it."""

    platform: str
    row: int  # the item the person chose
    fused: F32 | None
    own: F32 | None
    last: F32 | None
    seq: list[int]  # rows of the platform's recent positive items, oldest first
    journey: list[int] | None = None  # hashes of the recent positive items of every platform (sequence model)
    seq_query: F32 | None = None  # the sequence model's query from ``journey``
    seq_hidden: F32 | None = None  # and its hidden state (the ID part of ``seq``, for a network with ``id_out``)


class Adagrad:
    """Live weights and squared-gradient sums per platform."""

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr
        self.weights: dict[str, F64] = {}
        self.grad_sq: dict[str, F64] = {}

    def of(self, platform: str) -> F64:
        w = self.weights.get(platform)
        if w is None:
            w = self.weights[platform] = INITIAL_WEIGHTS.astype(np.float64).copy()
            self.grad_sq[platform] = np.full(N_FEATURES, INITIAL_GRAD_SQ)
        return w

    def step(self, platform: str, features: F64, log_q: F64, valid: npt.NDArray[np.bool_]) -> None:
        """One step per example, in order: ``features`` ``(M, 1+S, F)`` with the true item first,
        ``log_q`` ``(S,)`` the sampled-softmax correction, ``valid`` ``(M, 1+S)``."""
        w = self.of(platform)
        g2 = self.grad_sq[platform]
        for f, ok in zip(features, valid):
            s = f @ w
            s[1:] -= log_q
            s[~ok] = -np.inf
            s -= s.max()
            p = np.exp(s)
            p /= p.sum()
            grad = p @ f - f[0]  # d(-log softmax[0]) / dw
            g2 += grad * grad
            w -= self.lr * grad / np.sqrt(g2)


def negative_draw(
    rng: np.random.Generator, alive: npt.NDArray[np.bool_], long_counts: F64, size: int
) -> tuple[npt.NDArray[np.int64], F64]:
    """``size`` live rows, half uniform and half by long-term popularity, and ``log(size · q)`` of each."""
    n = len(alive)
    live = np.flatnonzero(alive)
    if len(live) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    q_uniform = np.zeros(n)
    q_uniform[live] = 1.0 / len(live)
    weights = np.where(alive, long_counts[:n], 0.0)
    total = weights.sum()
    half = size // 2
    if total > 0:
        q = 0.5 * q_uniform + 0.5 * weights / total
        by_pop = np.searchsorted(np.cumsum(weights), rng.random(size - half) * total, side="right")
        rows = np.concatenate([live[rng.integers(0, len(live), half)], np.minimum(by_pop, n - 1)])
    else:
        q = q_uniform
        rows = live[rng.integers(0, len(live), size)]
    rows = rows[alive[rows]]
    return rows.astype(np.int64), np.log(q[rows] * len(rows))

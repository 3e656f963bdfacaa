"""scripts/cold_identification.py: the cold targets' ranks within the never-interacted pool."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fusionrec.contracts import BehaviorEvent
from fusionrec.dataset import DatasetEvent

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "cold_identification.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("cold_identification", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(n: int, user: str, item: str, role: str = "history") -> DatasetEvent:
    return DatasetEvent(BehaviorEvent(f"e{n}", float(n), "shop", user, item, "purchase"), role)


def _unit(*rows: list[float]) -> np.ndarray:
    v = np.array(rows, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_cold_target_is_ranked_within_the_pool_by_its_cosine_with_the_last_item(script):
    # a, b are bought before the targets; c, d, e are never touched before them (the pool)
    vectors = _unit([1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0.1, 0.9, 0], [0, 0.2, 1])
    platforms = {"shop": ({k: i for i, k in enumerate("abcde")}, vectors)}
    events = [
        _event(0, "u", "a"),
        _event(1, "v", "b"),
        _event(2, "u", "d", "target"),  # cold: d is second closest to u's last item, a
        _event(3, "v", "a", "target"),  # warm: a was bought already
        _event(4, "w", "c", "target"),  # no history on the platform: not counted
    ]
    rows = script.replay(events, platforms)
    assert rows.shape == (2, 4)
    cold, by_last, by_mean, best = rows[0]
    assert (cold, by_last, by_mean) == (1, 1, 1)  # c beats d on both
    assert best == pytest.approx(float(vectors[2] @ vectors[0]), abs=1e-6)
    assert rows[1][0] == 0 and rows[1][1] == -1
    # v's pool no longer holds d (u bought it): of c (cosine 0.11 with b) and e (0.20), e is its best
    assert rows[1][3] == pytest.approx(float(vectors[4] @ vectors[1]), abs=1e-6)

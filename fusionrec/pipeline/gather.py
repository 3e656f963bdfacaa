"""Gather the people of a micro-batch into columns, and scatter them back as packed bytes.

Profiles become arrays over ``(person, platform)`` — direction ``(n, P, d)``, length, mass, time,
count — so that updating and fusing them is array math over the whole batch; the short hash lists
(recent events, consumed items, sequence, recent items per platform) stay Python lists, which are
cheaper than numpy for a membership test or an append.  ``P`` are the configured platforms; a stored
profile of a platform no longer configured is carried through unchanged; one made with an encoder of
another dimension (the model changed) is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.errors import DecodeError
from fusionrec.state import pack, unpack

__all__ = ["BatchState"]

F16 = npt.NDArray[np.float16]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class BatchState:
    """The people of one batch (see the module docstring); row ``i`` is ``persons[i]``."""

    def __init__(self, platforms: Sequence[str], dim: int, persons: Sequence[str], raws: Sequence[bytes | None]) -> None:
        n, p = len(persons), len(platforms)
        self.platforms = tuple(platforms)
        self.dim = dim
        self.persons = list(persons)
        self.index = {person: i for i, person in enumerate(self.persons)}
        self.last_ts: list[float] = [float("-inf")] * n
        self.events: list[list[int]] = [[] for _ in range(n)]
        self.consumed: list[list[int]] = [[] for _ in range(n)]
        self.seq: list[list[int]] = [[] for _ in range(n)]
        self.recent: list[list[list[int]]] = [[[] for _ in range(p)] for _ in range(n)]
        self.other: list[list[tuple[str, float, float, float, int, list[int], bytes]]] = [[] for _ in range(n)]
        self.unit = np.zeros((n, p, dim), np.float32)
        self.unit16 = np.zeros((n, p, dim), np.float16)  # the same directions as stored: packing converts nothing
        self.norm = np.zeros((n, p))
        self.mass = np.zeros((n, p))
        self.ts = np.full((n, p), -np.inf)
        self.count = np.zeros((n, p), np.int64)
        self.dropped = 0  # profiles of another encoder dimension, left out
        self._cells: tuple[F32, F16, F64, F64, F64, npt.NDArray[np.int64]] | None = None
        self._load(raws)

    def _load(self, raws: Sequence[bytes | None]) -> None:
        where = {name: j for j, name in enumerate(self.platforms)}
        cells_i: list[int] = []
        cells_j: list[int] = []
        scalars: list[tuple[float, float, float, int]] = []
        units: list[bytes] = []
        for i, raw in enumerate(raws):
            if raw is None:
                continue
            try:
                self.last_ts[i], self.events[i], self.consumed[i], self.seq[i], profiles = unpack(raw)
            except (ValueError, IndexError, UnicodeDecodeError) as exc:
                raise DecodeError("bad_state", f"person {self.persons[i]!r}: the stored state does not decode: {exc}") from None
            for profile in profiles:
                name, norm, mass, ts, n, recent, unit = profile
                if len(unit) != 2 * self.dim:
                    # made with an encoder of another dimension: its direction means nothing now, and
                    # the person starts that profile afresh (their items and events still count)
                    self.dropped += 1
                    continue
                j = where.get(name)
                if j is None:
                    self.other[i].append(profile)
                    continue
                cells_i.append(i)
                cells_j.append(j)
                scalars.append((norm, mass, ts, n))
                units.append(unit)
                self.recent[i][j] = recent
        if cells_i:
            ii, jj = np.array(cells_i), np.array(cells_j)
            stored = np.frombuffer(b"".join(units), "<f2").reshape(-1, self.dim)
            self.unit16[ii, jj] = stored
            self.unit[ii, jj] = stored
            cols = np.array(scalars)
            self.norm[ii, jj], self.mass[ii, jj], self.ts[ii, jj] = cols[:, 0], cols[:, 1], cols[:, 2]
            self.count[ii, jj] = cols[:, 3].astype(np.int64)

    def cells(self) -> tuple[F32, F16, F64, F64, F64, npt.NDArray[np.int64]]:
        """Views of ``(unit, unit16, norm, mass, ts, count)`` with ``(person, platform)`` as one flat cell
        index ``i·P + j`` (made once per batch: a wave of a few events pays numpy's per-call cost for each)."""
        if self._cells is None:
            self._cells = tuple(_flat(a) for a in (self.unit, self.unit16, self.norm, self.mass, self.ts, self.count))  # type: ignore[assignment]
        assert self._cells is not None
        return self._cells

    @property
    def has(self) -> npt.NDArray[np.bool_]:
        """``(n, P)``: the profile exists (some event was folded in)."""
        return self.count > 0

    def pack(self, rows: Sequence[int]) -> list[bytes]:
        """The packed state of each of ``rows`` (float16 directions are exact: updates round to them)."""
        if not rows:
            return []
        idx = np.asarray(rows)
        units = self.unit16[idx].astype("<f2", copy=False)
        count = self.count[idx]
        has = (count > 0).tolist()
        # Python scalars for the whole batch at once: indexing numpy arrays one cell at a time costs more
        norm, mass, ts, count_l = self.norm[idx].tolist(), self.mass[idx].tolist(), self.ts[idx].tolist(), count.tolist()
        out = []
        for k, i in enumerate(rows):
            profiles = [
                (name, norm[k][j], mass[k][j], ts[k][j], count_l[k][j], self.recent[i][j], units[k, j].tobytes())
                for j, name in enumerate(self.platforms)
                if has[k][j]
            ]
            out.append(pack(self.dim, self.last_ts[i], self.events[i], self.consumed[i], self.seq[i], profiles + self.other[i]))
        return out


def _flat(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A view of ``a`` with its first two axes as one (raises rather than copy: writes must land in ``a``)."""
    view = a.view()
    view.shape = (a.shape[0] * a.shape[1], *a.shape[2:])
    return view

"""The exact search's product with the old items, in the precision ``model.exact_precision`` asks for.

* ``float32``: numpy on a ``(d, n)`` copy (numpy's product with a transposed operand is slower).
* ``bfloat16``: torch (oneDNN) on a bfloat16 copy of the rows as stored, taken transposed at no cost;
  about twice as fast as float32 where the CPU has bfloat16 dot-product instructions, emulated and
  slower elsewhere.
* ``int8``: symmetric quantization, one scale per item and one per request row (``x ≈ scale · round(x /
  scale)`` with ``scale = max |x| / 127``), the sums in int32 (``torch._int_mm``), then rescaled: about
  twice as fast again where the CPU has int8 dot-product instructions (VNNI, AMX; not measured without).  Each score is off by
  at most ``Σ |Δq|·|w| + |q|·|Δw|`` over the coordinates (:func:`int8_error_bound`).

``auto`` resolves to int8 where the CPU has int8 dot products, else bfloat16 where it has those, else
float32 (measured here: NDCG@10 of the three within 0.3 % of each other on steam, amazon-beauty and
amazon-arts-office; BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["OldCopy", "cpu_flags", "int8_error_bound", "native_bfloat16", "native_int8", "quantize_rows", "resolve_precision"]

F32 = npt.NDArray[np.float32]

INT8_MAX = 127.0
_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_TINY = 1e-30  # the scale of an all-zero row: its quantized values are zeros either way


@cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where they cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has AVX512-BF16 or AMX-BF16."""
    return bool(_BFLOAT16_FLAGS & cpu_flags(cpuinfo))


def native_int8(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    return bool(_INT8_FLAGS & cpu_flags(cpuinfo))


def resolve_precision(setting: str) -> str:
    """``model.exact_precision`` as it runs: ``auto`` is the fastest precision the CPU has instructions
    for (int8, then bfloat16), float32 elsewhere (there torch would emulate the others, slower than
    numpy's float32)."""
    if setting != "auto":
        return setting
    if native_int8() and _has_int_mm():
        return "int8"
    return "bfloat16" if native_bfloat16() else "float32"


def _has_int_mm() -> bool:
    import torch

    return hasattr(torch, "_int_mm")


@dataclass(frozen=True)
class OldCopy:
    """The old rows' vectors prepared for the product in one precision."""

    precision: str
    data: Any  # float32 (d, n) array; bfloat16 (n, d) tensor; int8 (n, d) tensor
    scales: Any = None  # int8 only: the rows' scales, a (1, n) float32 tensor

    @classmethod
    def of(cls, vectors: F32, precision: str) -> OldCopy:
        """``vectors``: ``(n, d)`` float32, as stored."""
        if precision == "float32":
            return cls(precision, np.ascontiguousarray(vectors.T))
        import torch  # only for bfloat16 and int8: numpy has neither product

        if precision == "bfloat16":
            return cls(precision, torch.from_numpy(np.ascontiguousarray(vectors)).to(torch.bfloat16))
        if precision == "int8":
            values, scales = quantize_rows(vectors)
            return cls(precision, torch.from_numpy(values), torch.from_numpy(scales).reshape(1, -1))
        raise ValueError(f"unknown precision {precision!r}")

    @property
    def n(self) -> int:
        return int(self.data.shape[1] if self.precision == "float32" else self.data.shape[0])

    def product(self, q: F32, bias: F32, out: F32 | None = None) -> F32:
        """``(B, n)``: ``q · v + bias`` of every row (``bias`` ``(n,)``), into ``out`` when given; the
        bias is added in the pass that widens or rescales the product (one pass less over the block)."""
        if self.precision == "float32":
            out = np.matmul(q, self.data, out=out)
            out += bias
            return out
        import torch

        if out is None:
            out = np.empty((len(q), self.n), np.float32)
        target, queries, row_bias = torch.from_numpy(out), torch.from_numpy(np.ascontiguousarray(q)), torch.from_numpy(bias)
        if self.precision == "bfloat16":  # widened straight into ``out``: no float32 temporary
            torch.add(torch.mm(queries.to(torch.bfloat16), self.data.t()), row_bias, out=target)
            return out
        values, scales = quantize_rows(q)
        torch.mul(torch._int_mm(torch.from_numpy(values), self.data.t()), self.scales, out=target)
        torch.addcmul(row_bias, target, torch.from_numpy(scales)[:, None], out=target)
        return out


def quantize_rows(x: F32) -> tuple[npt.NDArray[np.int8], F32]:
    """``(int8 values, float32 scales)`` of the rows of ``x``: ``x ≈ scales[:, None] · values``; one
    compiled pass (torch's five element-wise calls cost ~5 times as much inside a running core)."""
    rows = np.ascontiguousarray(x, np.float32)
    values, scales = np.empty(rows.shape, np.int8), np.empty(len(rows), np.float32)
    _quantize_rows(rows, values, scales)
    return values, scales


@numba.njit(cache=True, nogil=True)
def _quantize_rows(x, values, scales):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    top, tiny = np.float32(INT8_MAX), np.float32(_TINY)
    for i in range(x.shape[0]):
        largest = np.float32(0.0)
        for j in range(x.shape[1]):
            largest = max(largest, abs(x[i, j]))
        scale = max(largest, tiny) / top  # float32 throughout: the same values as torch's ops gave
        scales[i] = scale
        for j in range(x.shape[1]):
            values[i, j] = np.int8(np.rint(x[i, j] / scale))  # rint: halves to even


def int8_error_bound(q: F32, vectors: F32) -> npt.NDArray[np.float64]:
    """``(B, n)``: how far the int8 product can be from the exact ``q · v`` (rounding moves each
    coordinate by at most half its row's scale; the int32 sums are exact)."""
    q64, v64 = q.astype(np.float64), vectors.astype(np.float64)
    half_q = np.abs(q64).max(axis=1) / INT8_MAX / 2
    half_v = np.abs(v64).max(axis=1) / INT8_MAX / 2
    abs_q, abs_v = np.abs(q64).sum(axis=1), np.abs(v64).sum(axis=1)
    d = q.shape[1]
    return half_q[:, None] * abs_v[None, :] + abs_q[:, None] * half_v[None, :] + d * half_q[:, None] * half_v[None, :]

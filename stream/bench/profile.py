"""py-spy of a worker during one step: where its time goes, as shares of the samples."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["py_spy", "start_py_spy", "aggregate_profile"]


def py_spy() -> str | None:
    """The py-spy executable beside this Python, or on PATH (``pip install py-spy``)."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, seconds: int, raw_path: Path) -> subprocess.Popen[bytes] | None:
    """Record ``pid`` for ``seconds`` at 50 Hz into ``raw_path`` (collapsed stacks); None: no py-spy."""
    exe = py_spy()
    if exe is None:
        return None
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "-d", str(seconds), "-r", "50", "--nonblocking", "-f", "raw", "-o", str(raw_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def aggregate_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy ``-f raw`` (collapsed stacks) → share of samples per function, self and inclusive."""
    if not path.exists():
        return {"error": f"py-spy wrote no profile to {path}"}
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    share = lambda c: [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]  # noqa: E731
    return {"samples": total, "file": str(path), "self_pct": share(self_c), "inclusive_pct": share(incl)}


def _frame(frame: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"
